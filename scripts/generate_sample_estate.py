#!/usr/bin/env python3
"""Generate the sample estate in include/estates/sample/ (deterministic, seeded).

The estate is shaped like the plan's 50-server wave example: infrastructure (DNS,
LDAP, monitoring), a data tier (PostgreSQL primary + replica, a Redis cluster, MongoDB
shards), an application tier (web, API, background workers) and edge services (load
balancers, VPN), plus a few staging and development servers.

Dependency direction: "A depends on B" (B in A's network_dependencies) means B must be
migrated no later than A. Monitoring therefore receives pushes (everyone -> monitoring
:4317) instead of scraping everyone, which would make monitoring depend on the whole
estate. Replication pairs and clusters talk both ways, which gives real dependency
cycles that planning must keep in one move group.

Usage: python scripts/generate_sample_estate.py [--seed N] [--output DIR] [--check]
``--check`` exits 1 if the files on disk differ from what the generator produces.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUTPUT = ROOT / "include" / "estates" / "sample"
DISCOVERED_AT = datetime(2025, 11, 3, 6, 0, tzinfo=UTC)
CA = "CN=Example Corp Issuing CA 01,O=Example Corp"

DOMAINS = {
    "production": "dc1.example.internal",
    "staging": "stg.example.internal",
    "development": "dev.example.internal",
}


@dataclass(frozen=True)
class Profile:
    """Hardware, OS and load of one role; members of a role are consistent."""

    tier: str
    cpu: int
    ram: int
    root_gb: int
    data_mount: str | None
    data_gb: int
    disk_type: str
    cpu_model: str
    os: tuple[str, str, str]  # distribution, version, kernel
    virtualization: str
    cpu_avg: tuple[float, float]
    mem_avg: tuple[float, float]
    iops: tuple[int, int]
    net_mbps: tuple[int, int]
    packages: tuple[str, ...]
    services: tuple[str, ...]


UBUNTU = ("Ubuntu", "22.04.4 LTS", "5.15.0-105-generic")
RHEL = ("Red Hat Enterprise Linux", "9.3", "5.14.0-362.8.1.el9_3.x86_64")
DEBIAN = ("Debian", "12.5", "6.1.0-18-amd64")
XEON = "Intel Xeon Gold 6248R"
XEON_OLD = "Intel Xeon E5-2680 v4"
EPYC = "AMD EPYC 7543"

PROFILES: dict[str, Profile] = {
    "dns": Profile("infrastructure", 2, 4, 40, "/var/cache/bind", 20, "SSD", XEON, DEBIAN,
                   "vmware", (6, 14), (30, 45), (40, 120), (5, 30),
                   ("bind9", "openssl", "chrony"), ("named.service", "chrony.service")),
    "ldap": Profile("infrastructure", 4, 8, 40, "/var/lib/ldap", 60, "SSD", XEON, DEBIAN,
                    "vmware", (8, 18), (40, 60), (80, 300), (5, 40),
                    ("slapd", "ldap-utils", "openssl"), ("slapd.service",)),
    "monitoring": Profile("infrastructure", 8, 32, 60, "/var/lib/prometheus", 940, "SSD", XEON,
                          UBUNTU, "vmware", (25, 45), (55, 75), (600, 1800), (40, 160),
                          ("prometheus", "alertmanager", "grafana", "otelcol-contrib"),
                          ("prometheus.service", "alertmanager.service", "grafana-server.service",
                           "otelcol-contrib.service")),
    "postgresql": Profile("data", 16, 64, 60, "/var/lib/pgsql", 1988, "NVMe", EPYC, RHEL,
                          "physical", (30, 55), (60, 80), (2500, 6000), (150, 450),
                          ("postgresql15-server", "pgbackrest", "repmgr_15"),
                          ("postgresql-15.service", "repmgr-15.service")),
    "redis": Profile("data", 8, 32, 40, "/var/lib/redis", 160, "SSD", XEON, UBUNTU, "vmware",
                     (15, 35), (55, 78), (200, 900), (200, 700),
                     ("redis-server", "redis-tools"), ("redis-server.service",)),
    "mongodb": Profile("data", 16, 64, 60, "/var/lib/mongo", 964, "SSD", EPYC, RHEL,
                       "physical", (25, 50), (60, 82), (1500, 4200), (100, 380),
                       ("mongodb-org-server", "mongodb-mongosh"), ("mongod.service",)),
    "web": Profile("web", 4, 8, 60, "/var/www", 40, "SSD", XEON_OLD, UBUNTU, "vmware",
                   (18, 38), (35, 55), (50, 250), (80, 300),
                   ("nginx", "openssl", "zlib1g", "libpcre3"), ("nginx.service",)),
    "api": Profile("application", 8, 16, 60, "/srv/app", 140, "SSD", XEON, UBUNTU, "vmware",
                   (25, 52), (45, 70), (100, 400), (60, 240), (), ()),
    "worker": Profile("application", 8, 16, 60, "/srv/app", 140, "SSD", XEON, UBUNTU,
                      "vmware", (35, 65), (50, 72), (150, 600), (20, 120), (), ()),
    "load-balancer": Profile("edge", 4, 8, 40, None, 0, "SSD", XEON, UBUNTU, "vmware",
                             (12, 30), (25, 40), (20, 80), (400, 1400),
                             ("haproxy", "keepalived", "openssl"),
                             ("haproxy.service", "keepalived.service")),
    "vpn": Profile("edge", 2, 4, 40, None, 0, "SSD", XEON_OLD, UBUNTU, "vmware",
                   (8, 22), (25, 40), (10, 50), (50, 250),
                   ("openvpn", "wireguard-tools", "libpam-ldapd"),
                   ("openvpn-server@corp.service", "wg-quick@wg0.service")),
}


@dataclass
class Server:
    server_id: str
    short: str
    role: str
    profile: str
    environment: str
    ips: list[str]
    subnet: str
    applications: list[dict[str, Any]]
    service: str | None = None
    deps: list[dict[str, Any]] = field(default_factory=list)
    certificates: list[str] = field(default_factory=list)  # subjects
    data_residency: str | None = None
    data_classification: str | None = None
    cpu: int | None = None
    ram: int | None = None
    data_gb: int | None = None

    @property
    def hostname(self) -> str:
        return f"{self.short}.{DOMAINS[self.environment]}"

    def depend(self, destination: str, protocol: str, per_hour: float) -> None:
        if any(d["destination"] == destination for d in self.deps):
            return
        self.deps.append({"destination": destination, "protocol": protocol,
                          "frequency_per_hour": round(per_hour)})


def _app(name: str, version: str, ports: list[int], kind: str, **extra: Any) -> dict[str, Any]:
    app: dict[str, Any] = {"name": name, "version": version, "ports": ports, "kind": kind}
    app.update(extra)
    return app


def build_servers(rng: random.Random) -> list[Server]:
    servers: list[Server] = []

    def add(short: str, role: str, profile: str, env: str, ip: str, apps: list[dict[str, Any]],
            **kw: Any) -> Server:
        server = Server(server_id=f"srv-{len(servers) + 1:03d}", short=short, role=role,
                        profile=profile, environment=env, ips=[ip],
                        subnet=ip.rsplit(".", 1)[0] + ".0/24", applications=apps, **kw)
        servers.append(server)
        return server

    # --- infrastructure (plan wave 1): pairs that replicate with each other only
    for i in (1, 2):
        add(f"dns-{i:02d}", "dns", "dns", "production", f"10.20.1.{10 + i}",
            [_app("bind9", "9.18.24", [53], "dns", config_files=["/etc/bind/named.conf"])])
    for i in (1, 2):
        add(f"ldap-{i:02d}", "ldap", "ldap", "production", f"10.20.1.{20 + i}",
            [_app("slapd", "2.5.13", [389, 636], "directory", data_size_gb=4.5,
                  config_files=["/etc/ldap/slapd.d"], backup_schedule="daily 01:00 UTC")],
            certificates=[f"CN=ldap-{i:02d}.dc1.example.internal"])
    for i in (1, 2):
        add(f"mon-{i:02d}", "monitoring", "monitoring", "production", f"10.20.1.{30 + i}",
            [_app("prometheus", "2.51.2", [9090], "monitoring", data_size_gb=620),
             _app("alertmanager", "0.27.0", [9093, 9094], "monitoring"),
             _app("grafana", "10.4.2", [3000], "monitoring", dependencies=["sqlite3"]),
             _app("otelcol-contrib", "0.98.0", [4317, 4318], "monitoring")],
            certificates=[f"CN=mon-{i:02d}.dc1.example.internal"])

    # --- data tier (plan wave 2)
    pg_primary = add("pg-01", "postgresql-primary", "postgresql", "production", "10.20.2.11",
                     [_app("postgresql", "15.6", [5432], "database", data_size_gb=1420,
                           backup_schedule="daily 02:00 UTC",
                           config_files=["/var/lib/pgsql/15/data/postgresql.conf"]),
                      _app("repmgrd", "5.4.1", [], "database")],
                     data_residency="US", data_classification="confidential")
    pg_replica = add("pg-02", "postgresql-replica", "postgresql", "production", "10.20.2.12",
                     [_app("postgresql", "15.6", [5432], "database", data_size_gb=1420,
                           config_files=["/var/lib/pgsql/15/data/postgresql.conf"]),
                      _app("repmgrd", "5.4.1", [], "database")],
                     data_residency="US", data_classification="confidential")
    redis = [add(f"redis-{i:02d}", "redis", "redis", "production", f"10.20.2.{20 + i}",
                 [_app("redis-server", "7.2.4", [6379, 16379], "cache",
                       data_size_gb=round(rng.uniform(18, 26), 1))],
                 data_residency="US", data_classification="internal")
             for i in (1, 2, 3)]
    mongo = [add(f"mongo-{i:02d}", "mongodb", "mongodb", "production", f"10.20.2.{30 + i}",
                 [_app("mongod", "7.0.8", [27018], "database",
                       data_size_gb=round(rng.uniform(560, 720)),
                       backup_schedule="daily 03:00 UTC",
                       config_files=["/etc/mongod.conf"])],
                 data_residency="US", data_classification="confidential")
             for i in (1, 2, 3, 4)]

    # --- application tier (plan wave 3)
    orders = [add(f"api-{i:02d}", "api", "api", "production", f"10.20.3.{10 + i}",
                  [_app("gunicorn", "21.2.0", [8080], "api",
                        dependencies=["python3.11", "psycopg2", "redis-py", "pg-01:5432"])],
                  service="orders", certificates=[f"CN=api-{i:02d}.dc1.example.internal"])
              for i in range(1, 9)]
    catalog = [add(f"api-{i:02d}", "api", "api", "production", f"10.20.3.{10 + i}",
                   [_app("node", "20.12.2", [8080], "api",
                         dependencies=["express", "mongodb-driver", "ioredis"]),
                    _app("mongos", "7.0.8", [27017], "database")],
                   service="catalog", certificates=[f"CN=api-{i:02d}.dc1.example.internal"])
               for i in range(9, 16)]
    apis = orders + catalog
    workers = []
    for i in range(1, 9):
        if i <= 5:
            broker = f"{redis[(i - 1) % 3].short}:6379"  # the node it also talks to below
            apps = [_app("celery", "5.3.6", [], "worker",
                         dependencies=["python3.11", "kombu", broker])]
        else:
            apps = [_app("sidekiq", "7.2.4", [], "worker", dependencies=["ruby3.2"])]
        workers.append(add(f"worker-{i:02d}", "worker", "worker", "production",
                           f"10.20.3.{40 + i}", apps,
                           service="orders" if i <= 5 else "catalog"))
    webs = [add(f"web-{i:02d}", "web", "web", "production", f"10.20.4.{10 + i}",
                [_app("nginx", "1.24.0", [80, 443], "web",
                      dependencies=["openssl", "zlib", "pcre"],
                      config_files=["/etc/nginx/nginx.conf", "/etc/nginx/sites-enabled/*"])],
                certificates=["CN=www.example.com"])
            for i in range(1, 13)]

    # --- edge (plan wave 4)
    lbs = []
    for i in (1, 2):
        lb = add(f"lb-{i:02d}", "load-balancer", "load-balancer", "production",
                 f"10.20.5.{10 + i}",
                 [_app("haproxy", "2.8.5", [80, 443, 8404], "load-balancer",
                       config_files=["/etc/haproxy/haproxy.cfg"]),
                  _app("keepalived", "2.2.8", [], "load-balancer")],
                 certificates=["CN=www.example.com", f"CN=lb-{i:02d}.dc1.example.internal"])
        lb.ips.append(f"203.0.113.{10 + i}")
        lbs.append(lb)
    vpns = []
    for i in (1, 2):
        vpn = add(f"vpn-{i:02d}", "vpn", "vpn", "production", f"10.20.5.{20 + i}",
                  [_app("openvpn", "2.6.9", [1194], "vpn"),
                   _app("wireguard", "1.0.20210914", [51820], "vpn")],
                  certificates=[f"CN=vpn-{i:02d}.example.com"])
        vpn.ips.append(f"203.0.113.{20 + i}")
        vpns.append(vpn)

    # --- non-production: a staging slice of the orders service and a dev box
    stg_db = add("stg-pg-01", "postgresql-primary", "postgresql", "staging", "10.21.2.11",
                 [_app("postgresql", "15.6", [5432], "database", data_size_gb=180,
                       backup_schedule="weekly Sun 02:00 UTC")],
                 cpu=8, ram=32, data_gb=400, data_classification="internal")
    stg_api = add("stg-api-01", "api", "api", "staging", "10.21.3.11",
                  [_app("gunicorn", "21.2.0", [8080], "api",
                        dependencies=["python3.11", "psycopg2", "stg-pg-01:5432"])],
                  service="orders", cpu=4, ram=8)
    stg_web = add("stg-web-01", "web", "web", "staging", "10.21.4.11",
                  [_app("nginx", "1.24.0", [80, 443], "web", dependencies=["openssl"])],
                  certificates=["CN=staging.example.com"], cpu=2, ram=4)
    dev = add("dev-api-01", "api", "api", "development", "10.22.3.11",
              [_app("gunicorn", "21.2.0", [8080], "api", dependencies=["python3.11"]),
               _app("postgresql", "15.6", [5432], "database", data_size_gb=25)],
              service="orders", cpu=4, ram=16, data_gb=100)

    # --- dependencies --------------------------------------------------------------
    dns, ldap, mon = servers[0:2], servers[2:4], servers[4:6]
    dns[0].depend(f"{dns[1].ips[0]}:53", "dns", 12)  # zone transfers / NOTIFY both ways
    dns[1].depend(f"{dns[0].ips[0]}:53", "dns", 12)
    ldap[0].depend(f"{ldap[1].hostname}:389", "ldap", 900)  # mirror-mode syncrepl
    ldap[1].depend(f"{ldap[0].hostname}:389", "ldap", 900)
    mon[0].depend("mon-02:9094", "alertmanager-cluster", 720)  # HA gossip
    mon[1].depend("mon-01:9094", "alertmanager-cluster", 720)

    for n, server in enumerate(servers[6:]):
        # everybody resolves names, authenticates logins and pushes telemetry
        server.depend(f"{dns[n % 2].ips[0]}:53", "dns", rng.uniform(1500, 6000))
        server.depend(f"{dns[(n + 1) % 2].ips[0]}:53", "dns", rng.uniform(100, 600))
        server.depend(f"{ldap[n % 2].hostname}:636", "ldaps", rng.uniform(20, 240))
        server.depend(f"mon-{n % 2 + 1:02d}:4317", "otlp", 720)

    pg_replica.depend("pg-01:5432", "postgresql-replication", 3600)  # streaming WAL
    pg_primary.depend("pg-02:5432", "postgresql-replication", 3600)  # sync-standby, repmgr
    for node in redis:  # cluster bus: every node gossips with every other
        for peer in redis:
            if peer is not node:
                node.depend(f"{peer.short}:16379", "redis-cluster", 36000)
    for node in mongo:  # chunk migrations between shards
        for peer in mongo:
            if peer is not node:
                node.depend(f"{peer.short}:27018", "mongodb", rng.uniform(200, 900))

    for i, api in enumerate(orders):
        api.depend("pg-01:5432", "postgresql", rng.uniform(15000, 50000))
        if i % 2:
            api.depend("pg-02:5432", "postgresql", rng.uniform(5000, 20000))  # read replica
        for r in (redis[i % 3], redis[(i + 1) % 3]):
            api.depend(f"{r.short}:6379", "redis", rng.uniform(20000, 90000))
    for i, api in enumerate(catalog):
        for shard in mongo:  # the local mongos router talks to every shard
            api.depend(f"{shard.short}:27018", "mongodb", rng.uniform(3000, 20000))
        api.depend(f"{redis[i % 3].short}:6379", "redis", rng.uniform(20000, 90000))
    for i, worker in enumerate(workers):
        worker.depend(f"{redis[i % 3].short}:6379", "redis", rng.uniform(30000, 90000))
        if worker.service == "orders":
            worker.depend("pg-01:5432", "postgresql", rng.uniform(4000, 15000))
            worker.depend(f"{orders[i % 8].short}:8080", "http", rng.uniform(200, 1200))
        else:
            worker.depend(f"{mongo[i % 4].short}:27018", "mongodb", rng.uniform(1000, 6000))
    for i, web in enumerate(webs):
        web.depend(f"{orders[i % 8].short}:8080", "http", rng.uniform(8000, 30000))
        web.depend(f"{orders[(i + 3) % 8].short}:8080", "http", rng.uniform(8000, 30000))
        web.depend(f"{catalog[i % 7].short}:8080", "http", rng.uniform(8000, 30000))
    for lb in lbs:
        for web in webs:  # backend pool
            lb.depend(f"{web.short}:443", "https", rng.uniform(10000, 40000))
    for i, vpn in enumerate(vpns):  # forwarded operator traffic
        vpn.depend(f"{apis[i].short}:8080", "http", rng.uniform(10, 80))
        vpn.depend(f"{apis[8 + i].short}:8080", "http", rng.uniform(10, 80))
        vpn.depend(f"{workers[i].short}:22", "ssh", rng.uniform(1, 12))
        vpn.depend(f"mon-0{i + 1}:3000", "https", rng.uniform(20, 120))
    stg_api.depend(f"{stg_db.hostname}:5432", "postgresql", rng.uniform(500, 3000))
    stg_web.depend("stg-api-01:8080", "http", rng.uniform(300, 2000))
    dev.depend("api.github.com:443", "https", 30)
    dev.deps[-1]["external"] = True  # outside the estate, on purpose
    return servers


def _baseline(rng: random.Random, profile: Profile) -> dict[str, Any]:
    cpu_avg = rng.uniform(*profile.cpu_avg)
    cpu_p95 = min(99.0, cpu_avg * rng.uniform(1.5, 2.0))
    cpu_peak = min(100.0, cpu_p95 * rng.uniform(1.15, 1.45))
    mem_avg = rng.uniform(*profile.mem_avg)
    mem_p95 = min(99.0, mem_avg + rng.uniform(4, 10))
    mem_peak = min(100.0, mem_p95 + rng.uniform(2, 7))
    iops = rng.uniform(*profile.iops)
    return {
        "cpu_avg_utilization_pct": round(cpu_avg, 1),
        "memory_avg_utilization_pct": round(mem_avg, 1),
        "disk_iops_avg": round(iops),
        "network_throughput_mbps": round(rng.uniform(*profile.net_mbps)),
        "cpu_p95_utilization_pct": round(cpu_p95, 1),
        "cpu_peak_utilization_pct": round(cpu_peak, 1),
        "memory_p95_utilization_pct": round(mem_p95, 1),
        "memory_peak_utilization_pct": round(mem_peak, 1),
        "disk_read_mbps": round(iops * rng.uniform(0.02, 0.05), 1),
        "disk_write_mbps": round(iops * rng.uniform(0.01, 0.03), 1),
        "sample_days": 7,
    }


def _packages(server: Server, profile: Profile) -> list[str]:
    base = ["openssh-server", "sssd", "otelcol-agent", "rsyslog", "ca-certificates"]
    names = [a["name"] for a in server.applications]
    return sorted({*base, *profile.packages, *names})


def to_record(server: Server, rng: random.Random, index: int) -> dict[str, Any]:
    profile = PROFILES[server.profile]
    cpu = server.cpu or profile.cpu
    ram = server.ram or profile.ram
    data_gb = server.data_gb if server.data_gb is not None else profile.data_gb
    app_data = sum(a.get("data_size_gb") or 0 for a in server.applications)
    filesystems = [{
        "mount_point": "/",
        "fs_type": "xfs" if profile.os[0].startswith("Red Hat") else "ext4",
        "size_gb": profile.root_gb,
        "used_gb": round(profile.root_gb * rng.uniform(0.3, 0.6), 1),
        "device": "/dev/mapper/vg0-root" if profile.virtualization == "physical" else "/dev/sda1",
    }]
    if profile.data_mount and data_gb:
        used = max(app_data * 1.05, data_gb * rng.uniform(0.25, 0.5))
        filesystems.append({
            "mount_point": profile.data_mount,
            "fs_type": "xfs",
            "size_gb": data_gb,
            "used_gb": round(min(used, data_gb * 0.92), 1),
            "device": "/dev/mapper/vg0-data" if profile.virtualization == "physical"
            else "/dev/sdb1",
        })
    ports = sorted({p for a in server.applications for p in a["ports"]} | {22})
    subnet_prefix = server.subnet.rsplit(".", 1)[0]
    expires = [DISCOVERED_AT + timedelta(days=rng.randint(60, 400))
               for _ in server.certificates]
    if server.short == "lb-02":  # one certificate close to expiry, as estates have
        expires[0] = DISCOVERED_AT + timedelta(days=24)
    tags = {"tier": profile.tier, "owner": f"team-{server.service or profile.tier}"}
    if server.service:
        tags["service"] = server.service
    distribution, version, kernel = profile.os
    record: dict[str, Any] = {
        "server_id": server.server_id,
        "hostname": server.hostname,
        "ip_addresses": server.ips,
        "environment": server.environment,
        "role": server.role,
        "datacenter": "dc1",
        "tags": tags,
        "os": {
            "type": "Linux",
            "distribution": distribution,
            "version": version,
            "kernel": kernel,
            "architecture": "x86_64",
            "installed_packages": _packages(server, profile),
            "running_services": sorted({*profile.services, "sshd.service", "sssd.service",
                                        "otelcol-agent.service"}),
            "cron_jobs": (["0 2 * * * /usr/local/bin/backup.sh"]
                          if any(a.get("backup_schedule") for a in server.applications)
                          else []),
            "systemd_units": sorted({*profile.services, "sshd.service"}),
        },
        "hardware": {
            "cpu_cores": cpu,
            "cpu_model": profile.cpu_model,
            "cpu_mhz": 3000 if profile.cpu_model == XEON else 2800,
            "ram_gb": ram,
            "disk_total_gb": sum(f["size_gb"] for f in filesystems),
            "disk_type": profile.disk_type,
            "disk_iops_max": {"NVMe": 200000, "SSD": 40000}.get(profile.disk_type, 800),
            "network_bandwidth_gbps": 25 if profile.tier in ("data", "edge") else 10,
            "virtualization": profile.virtualization,
        },
        "applications": server.applications,
        "network_dependencies": server.deps,
        "performance_baseline": _baseline(rng, profile),
        "storage": {
            "filesystems": filesystems,
            "lvm": profile.virtualization == "physical",
            "raid_level": "raid10" if profile.virtualization == "physical" else None,
            "snapshot_schedule": "daily 01:30 UTC" if profile.tier == "data" else None,
        },
        "network": {
            "firewall_rules": [{"direction": "inbound", "protocol": "tcp", "port": p,
                                "source": "10.0.0.0/8", "action": "allow"} for p in ports],
            "routes": [f"default via {subnet_prefix}.1 dev ens192"],
            "dns_servers": ["10.20.1.11", "10.20.1.12"],
            "vpn_connections": (["corp-remote-access (openvpn)", "ops-wg0 (wireguard)"]
                                if server.role == "vpn" else []),
            "subnets": [server.subnet] + (["203.0.113.0/24"] if len(server.ips) > 1 else []),
        },
        "security": {
            "open_ports": ports,
            "certificates": [{"subject": subject, "issuer": CA,
                              "expires_at": when.isoformat().replace("+00:00", "Z")}
                             for subject, when in zip(server.certificates, expires,
                                                      strict=True)],
            "encryption_at_rest": profile.tier == "data",
            "compliance_baselines": (["CIS Level 1", "PCI-DSS"] if profile.tier == "data"
                                     else ["CIS Level 1"]),
        },
        "backup": {
            "available": True,
            "last_backup_at": (DISCOVERED_AT - timedelta(hours=rng.randint(3, 20)))
            .isoformat().replace("+00:00", "Z"),
            "tool": {"postgresql": "pgbackrest", "mongodb": "percona-backup-mongodb"}
            .get(server.profile, "veeam"),
            "restore_tested": profile.tier in ("data", "infrastructure"),
        },
        "discovered_at": (DISCOVERED_AT + timedelta(minutes=index))
        .isoformat().replace("+00:00", "Z"),
    }
    if server.data_residency:
        record["data_residency"] = server.data_residency
    if server.data_classification:
        record["data_classification"] = server.data_classification
    return record


def build_sample_estate(seed: int = 20251103) -> list[dict[str, Any]]:
    """The sample estate's records, identical for the same seed."""
    rng = random.Random(seed)
    servers = build_servers(rng)
    return [to_record(server, rng, index) for index, server in enumerate(servers)]


def readme(records: list[dict[str, Any]], seed: int) -> str:
    roles = Counter(r["role"] for r in records)
    envs = Counter(r["environment"] for r in records)
    deps = sum(len(r["network_dependencies"]) for r in records)
    rows = "\n".join(
        f"| {r['server_id']} | {r['hostname']} | {r['role']} | {r['environment']} | "
        f"{r['hardware']['cpu_cores']} | {r['hardware']['ram_gb']} | "
        f"{', '.join(str(p) for p in r['security']['open_ports'])} |"
        for r in records
    )
    return f"""# Sample estate

Generated by `scripts/generate_sample_estate.py --seed {seed}`; do not edit by hand
(re-run the script; `--check` tells whether the files are current). One discovery
record per file (`srv-XXX.json`), in the plan's schema.

{len(records)} servers ({', '.join(f'{n} {e}' for e, n in sorted(envs.items()))}),
{deps} network dependencies. Shaped like the plan's 50-server wave example:

| role | servers |
|---|---|
{chr(10).join(f'| {role} | {n} |' for role, n in sorted(roles.items()))}

## Dependencies

"A depends on B" (B appears in A's `network_dependencies`) means B must be migrated
no later than A.

- Every server outside the infrastructure pairs uses DNS (by IP, as resolv.conf
  does), LDAPS (by FQDN, for sssd logins) and pushes telemetry to monitoring
  (`mon-0X:4317`). Monitoring does not scrape: scraping would make monitoring depend
  on everything and everything on monitoring.
- Infrastructure pairs only talk to each other (they resolve one another through
  `/etc/hosts`), so they form the first wave.
- Cycles (each must stay in one move group): dns-01 ↔ dns-02 (zone transfers),
  ldap-01 ↔ ldap-02 (mirror-mode replication), mon-01 ↔ mon-02 (alertmanager
  gossip), pg-01 ↔ pg-02 (streaming replication + synchronous standby), the three
  Redis cluster nodes (cluster bus 16379) and the four MongoDB shards (chunk
  migrations).
- orders API (api-01..08, gunicorn) → pg-01 (odd ones also read pg-02) and two Redis
  nodes; catalog API (api-09..15, node + local mongos) → every MongoDB shard and one
  Redis node; workers → Redis, plus pg-01 and an orders API (celery) or a shard
  (sidekiq); web → two orders APIs and one catalog API; load balancers → all twelve
  web servers; VPN gateways → a few APIs, a worker (ssh) and Grafana.
- Staging: stg-web-01 → stg-api-01 → stg-pg-01 (plus shared DNS/LDAP/monitoring).
  dev-api-01 runs its own PostgreSQL and calls `api.github.com:443`, marked
  `"external": true`.
- Some `applications[].dependencies` name servers too (`pg-01:5432` for the orders
  API, the Redis broker for celery workers, `stg-pg-01:5432`), always matching a
  network dependency; library names (`openssl`) are not servers.

Data stores carry `data_size_gb`, backups (all available, restore-tested for data
and infrastructure), encryption at rest and `data_residency: US`. lb-02 holds a
certificate that expires 24 days after discovery. IPs: production 10.20.0.0/16,
staging 10.21.0.0/16, development 10.22.0.0/16, public VIPs in 203.0.113.0/24.

| server_id | hostname | role | environment | vCPU | RAM GB | open ports |
|---|---|---|---|---|---|---|
{rows}
"""


def render(seed: int) -> dict[str, str]:
    records = build_sample_estate(seed)
    files = {f"{r['server_id']}.json": json.dumps(r, indent=2) + "\n" for r in records}
    files["README.md"] = readme(records, seed)
    return files


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=20251103)
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    parser.add_argument("--check", action="store_true",
                        help="compare with the files on disk instead of writing")
    args = parser.parse_args(argv)
    files = render(args.seed)
    out: Path = args.output
    existing = {p.name for p in out.glob("srv-*.json")} if out.is_dir() else set()
    if args.check:
        stale = sorted(existing - files.keys())
        changed = sorted(name for name, text in files.items()
                         if not (out / name).is_file() or (out / name).read_text() != text)
        for name in changed + stale:
            print(f"out of date: {out / name}", file=sys.stderr)
        return 1 if changed or stale else 0
    out.mkdir(parents=True, exist_ok=True)
    for name in sorted(existing - files.keys()):
        (out / name).unlink()
    for name, text in files.items():
        path = out / name
        if not path.is_file() or path.read_text() != text:
            path.write_text(text)
    print(f"wrote {len(files) - 1} servers and README.md to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
