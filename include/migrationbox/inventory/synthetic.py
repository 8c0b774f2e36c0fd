"""Large synthetic estates for benchmarks and scale tests.

Real estates are not uniform random graphs: they are made of business segments (a
service with its web, API, worker and data servers), share a small set of
infrastructure servers that everybody depends on (DNS, LDAP, monitoring), point mostly
"down" the tiers (edge -> web -> application -> data -> infrastructure), and contain
small cycles where servers replicate with each other (database pairs, cache
clusters) or call each other (a few API pairs). This generator reproduces that shape
so that planning benchmarks see realistic degree distributions, hub nodes for
PageRank and many small strongly connected components, never one giant one.

Records are plain dicts in the discovery schema and validate with 0 quarantined.
Generation is pure Python with precomputed templates: 100,000 servers take seconds.
"""

from __future__ import annotations

import json
import os
import random
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from migrationbox.inventory.loaders import gc_paused

MANIFEST = ".synthetic-estate.json"


@dataclass(frozen=True, slots=True)
class RoleSpec:
    role: str
    tier: str
    app: str
    version: str
    ports: tuple[int, ...]
    kind: str
    protocol: str
    cpu: tuple[int, ...]
    ram_per_cpu: tuple[int, ...]
    disk_gb: tuple[int, ...]
    cpu_avg: tuple[float, float]
    mem_avg: tuple[float, float]
    data_gb: tuple[int, int] | None = None


ROLES: dict[str, RoleSpec] = {r.role: r for r in (
    RoleSpec("dns", "infrastructure", "bind9", "9.18.24", (53,), "dns", "dns",
             (2, 4), (2,), (60,), (5, 20), (30, 50)),
    RoleSpec("ldap", "infrastructure", "slapd", "2.5.13", (389, 636), "directory", "ldaps",
             (4,), (2,), (100,), (5, 20), (35, 60), (2, 20)),
    RoleSpec("monitoring", "infrastructure", "prometheus", "2.51.2", (9090, 4317), "monitoring",
             "otlp", (8, 16), (4,), (1000, 2000), (20, 50), (50, 75), (200, 900)),
    RoleSpec("postgresql", "data", "postgresql", "15.6", (5432,), "database", "postgresql",
             (8, 16, 32), (4, 8), (500, 1000, 2000), (20, 60), (55, 85), (50, 1500)),
    RoleSpec("mysql", "data", "mysqld", "8.0.36", (3306,), "database", "mysql",
             (8, 16), (4, 8), (500, 1000), (20, 55), (55, 85), (40, 900)),
    RoleSpec("redis", "data", "redis-server", "7.2.4", (6379,), "cache", "redis",
             (4, 8), (4, 8), (100, 200), (10, 35), (50, 80), (5, 60)),
    RoleSpec("mongodb", "data", "mongod", "7.0.8", (27017,), "database", "mongodb",
             (8, 16), (4, 8), (500, 1000), (20, 50), (55, 85), (60, 1200)),
    RoleSpec("kafka", "data", "kafka", "3.7.0", (9092,), "queue", "kafka",
             (8, 16), (4,), (1000, 2000), (20, 45), (45, 70), (100, 1500)),
    RoleSpec("api", "application", "gunicorn", "21.2.0", (8080,), "api", "http",
             (2, 4, 8), (2, 4), (50, 100, 200), (15, 55), (35, 70)),
    RoleSpec("worker", "application", "celery", "5.3.6", (), "worker", "http",
             (4, 8), (2, 4), (50, 100), (25, 70), (40, 75)),
    RoleSpec("web", "web", "nginx", "1.24.0", (80, 443), "web", "https",
             (2, 4), (2,), (40, 80), (10, 40), (25, 55)),
    RoleSpec("load-balancer", "edge", "haproxy", "2.8.5", (80, 443), "load-balancer", "https",
             (4, 8), (2,), (40,), (10, 35), (20, 40)),
    RoleSpec("vpn", "edge", "openvpn", "2.6.9", (1194,), "vpn", "https",
             (2, 4), (2,), (40,), (5, 25), (20, 40)),
)}

DATA_ROLES = ("postgresql", "postgresql", "mysql", "redis", "redis", "mongodb", "kafka")
OSES = (
    ("Ubuntu", "22.04.4 LTS", "5.15.0-105-generic"),
    ("Ubuntu", "20.04.6 LTS", "5.4.0-176-generic"),
    ("Red Hat Enterprise Linux", "9.3", "5.14.0-362.8.1.el9_3.x86_64"),
    ("Red Hat Enterprise Linux", "8.9", "4.18.0-513.18.1.el8_9.x86_64"),
    ("Debian", "12.5", "6.1.0-18-amd64"),
)
ENVIRONMENTS = (("production", 0.75), ("staging", 0.15), ("development", 0.10))


@dataclass(slots=True)
class _Node:
    index: int
    role: str
    segment: int
    environment: str
    cluster: int = -1  # index of the first member of its replication cluster

    @property
    def short(self) -> str:
        return f"{self.role}-{self.index:06d}"


def _ip(index: int) -> str:
    # 10.40.0.1 upwards, skipping .0 and .255 in the last octet
    block, host = divmod(index, 254)
    return f"10.{40 + block // 256}.{block % 256}.{host + 1}"


def _plan_segments(n: int, rng: random.Random) -> list[_Node]:
    """Roles and segments for n servers: a shared infrastructure, then segments."""
    nodes: list[_Node] = []
    infra = min(n, max(6, min(600, n // 100)))
    for i in range(infra):
        role = ("dns", "ldap", "monitoring")[i % 3]
        nodes.append(_Node(i, role, -1, "production"))
    segment = 0
    while len(nodes) < n:
        size = min(n - len(nodes), rng.randint(40, 160))
        r = rng.random()
        env = "production"
        acc = 0.0
        for name, share in ENVIRONMENTS:
            acc += share
            if r < acc:
                env = name
                break
        counts = {
            "data": max(1, round(size * 0.15)),
            "api": max(1, round(size * 0.30)),
            "worker": round(size * 0.15),
            "edge": max(1, round(size * 0.04)) if size >= 10 else 0,
        }
        counts["web"] = max(0, size - sum(counts.values()))
        roles: list[str] = []
        data_roles = [rng.choice(DATA_ROLES) for _ in range(counts["data"])]
        roles += sorted(data_roles)  # same-role neighbours form replication clusters
        roles += ["api"] * counts["api"] + ["worker"] * counts["worker"]
        roles += ["web"] * counts["web"]
        roles += ["load-balancer" if k % 3 else "vpn" for k in range(1, counts["edge"] + 1)]
        for role in roles[:size]:
            nodes.append(_Node(len(nodes), role, segment, env))
        segment += 1
    return nodes


def _clusters(nodes: list[_Node], rng: random.Random) -> None:
    """Group neighbouring data servers of one role into replication clusters of 2-3."""
    i = 0
    while i < len(nodes):
        node = nodes[i]
        if ROLES[node.role].tier != "data" or rng.random() > 0.6:
            i += 1
            continue
        size = rng.choice((2, 2, 3))
        members = [n for n in nodes[i:i + size]
                   if n.role == node.role and n.segment == node.segment]
        if len(members) >= 2:
            for member in members:
                member.cluster = node.index
        i += max(1, len(members))


def generate_estate(
    n: int, seed: int = 0, dependency_density: float = 4.5
) -> list[dict[str, Any]]:
    """``n`` discovery records with about ``dependency_density`` dependencies each.

    Deterministic for a given (n, seed, density). Dependencies point mostly to lower
    tiers of the same segment plus the shared infrastructure; replication clusters
    (data) and a few mutually calling API pairs give small cycles.
    """
    if n < 1:
        raise ValueError("n must be at least 1")
    if dependency_density <= 0:
        raise ValueError("dependency_density must be positive")
    with gc_paused():
        return _generate(n, seed, dependency_density)


def _generate(n: int, seed: int, dependency_density: float) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    nodes = _plan_segments(n, rng)
    _clusters(nodes, rng)

    infra: dict[str, list[_Node]] = {"dns": [], "ldap": [], "monitoring": []}
    by_segment: dict[int, dict[str, list[_Node]]] = {}
    for node in nodes:
        tier = ROLES[node.role].tier
        if node.segment < 0:
            infra[node.role].append(node)
            continue
        seg = by_segment.setdefault(node.segment, {"data": [], "api": [], "web": []})
        if tier == "data":
            seg["data"].append(node)
        elif node.role == "api":
            seg["api"].append(node)
        elif node.role == "web":
            seg["web"].append(node)

    cluster_members: dict[int, list[_Node]] = {}
    for node in nodes:
        if node.cluster >= 0:
            cluster_members.setdefault(node.cluster, []).append(node)

    mutual: dict[int, _Node] = {}  # a few API pairs that call each other
    for seg in by_segment.values():
        apis = seg["api"]
        for k in range(0, len(apis) - 1, 2):
            if rng.random() < 0.04:
                mutual[apis[k].index] = apis[k + 1]
                mutual[apis[k + 1].index] = apis[k]

    records = []
    choice, randint, uniform, gauss = rng.choice, rng.randint, rng.uniform, rng.gauss
    for node in nodes:
        spec = ROLES[node.role]
        targets: list[_Node] = []
        if node.segment < 0:  # infrastructure: replicates with its role peers only
            peers = infra[node.role]
            pos = node.index // 3  # infrastructure roles are dealt round-robin
            partner = peers[pos ^ 1] if (pos ^ 1) < len(peers) else None
            if partner is not None:
                targets.append(partner)
        else:
            want = max(2, min(int(dependency_density * 2), round(gauss(dependency_density, 1))))
            targets.append(choice(infra["dns"]))
            targets.append(choice(infra["ldap"] if node.index % 2 else infra["monitoring"]))
            seg = by_segment[node.segment]
            if node.cluster >= 0:
                targets += [m for m in cluster_members[node.cluster] if m is not node]
            if node.index in mutual:
                targets.append(mutual[node.index])
            if spec.tier == "data":
                pool: list[_Node] = []
            elif node.role == "web":
                pool = seg["api"] or seg["data"]
            elif spec.tier == "edge":
                pool = seg["web"] or seg["api"]
            else:  # api and worker: mostly data, sometimes an API of lower index
                pool = seg["data"]
            extra = want - len(targets)
            for _ in range(max(0, extra)):
                if not pool:
                    break
                if spec.tier == "application" and rng.random() < 0.2:
                    lower = [a for a in seg["api"][:8] if a.index < node.index]
                    if lower:
                        targets.append(choice(lower))
                        continue
                targets.append(choice(pool))
        deps = []
        seen: set[int] = set()
        for target in targets:
            if target.index == node.index or target.index in seen:
                continue
            seen.add(target.index)
            tspec = ROLES[target.role]
            port = tspec.ports[-1] if tspec.ports else 22
            host = _ip(target.index) if target.role == "dns" else target.short
            deps.append({
                "destination": f"{host}:{port}",
                "protocol": tspec.protocol,
                "frequency_per_hour": randint(10, 60000),
            })
        cpu = choice(spec.cpu)
        disk = choice(spec.disk_gb)
        cpu_avg = uniform(*spec.cpu_avg)
        mem_avg = uniform(*spec.mem_avg)
        distribution, version, kernel = OSES[node.index % len(OSES)]
        app: dict[str, Any] = {"name": spec.app, "version": spec.version,
                               "ports": list(spec.ports), "kind": spec.kind}
        if spec.data_gb:
            app["data_size_gb"] = randint(*spec.data_gb)
        domain = "infra" if node.segment < 0 else f"seg{node.segment:04d}"
        records.append({
            "server_id": f"srv-{node.index:06d}",
            "hostname": f"{node.short}.{domain}.synthetic.internal",
            "ip_addresses": [_ip(node.index)],
            "environment": node.environment,
            "role": node.role,
            "tags": {"tier": spec.tier, "segment": domain},
            "os": {"type": "Linux", "distribution": distribution, "version": version,
                   "kernel": kernel, "architecture": "x86_64"},
            "hardware": {"cpu_cores": cpu, "ram_gb": cpu * choice(spec.ram_per_cpu),
                         "disk_total_gb": disk, "disk_type": "SSD",
                         "virtualization": "vmware"},
            "applications": [app],
            "network_dependencies": deps,
            "performance_baseline": {
                "cpu_avg_utilization_pct": round(cpu_avg, 1),
                "memory_avg_utilization_pct": round(mem_avg, 1),
                "cpu_p95_utilization_pct": round(min(99.0, cpu_avg * 1.7), 1),
                "cpu_peak_utilization_pct": round(min(100.0, cpu_avg * 2.1), 1),
                "memory_p95_utilization_pct": round(min(99.0, mem_avg + 8), 1),
                "disk_iops_avg": randint(20, 5000),
                "network_throughput_mbps": randint(5, 900),
                "sample_days": 7,
            },
            "storage": {"filesystems": [{"mount_point": "/", "fs_type": "xfs",
                                         "size_gb": disk,
                                         "used_gb": round(disk * uniform(0.2, 0.8), 1)}]},
            "security": {"open_ports": sorted({22, *spec.ports})},
            "backup": {"available": True, "tool": "veeam"},
        })
    return records


# ----------------------------------------------------------------------------- writing


def _atomic_write(path: Path, chunks: Iterable[str]) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as handle:
            for chunk in chunks:
                handle.write(chunk)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_estate(
    records: list[dict[str, Any]], folder_or_jsonl: str | Path, *, per_file: int = 1
) -> list[Path]:
    """Write records as a JSON Lines file (``.jsonl``/``.ndjson``) or into a folder.

    In a folder, ``per_file=1`` writes ``<server_id>.json`` per record; larger values
    write lists of that many records as ``part-00001.json``... Re-writing a folder
    replaces the files an earlier ``write_estate`` wrote there (listed in a manifest)
    and refuses to mix into a folder of someone else's JSON files.
    """
    target = Path(folder_or_jsonl)
    if target.suffix.lower() in (".jsonl", ".ndjson"):
        target.parent.mkdir(parents=True, exist_ok=True)
        _atomic_write(target, (json.dumps(r, separators=(",", ":")) + "\n" for r in records))
        return [target]
    if per_file < 1:
        raise ValueError("per_file must be at least 1")
    target.mkdir(parents=True, exist_ok=True)
    manifest = target / MANIFEST
    previous: list[str] = json.loads(manifest.read_text())["files"] if manifest.exists() else []
    foreign = sorted(p.name for p in target.iterdir()
                     if p.suffix in (".json", ".jsonl", ".ndjson")
                     and p.name not in previous and p.name != MANIFEST)
    if foreign:
        raise FileExistsError(f"{target} holds JSON files not written by write_estate "
                              f"(e.g. {foreign[0]}); use an empty folder")
    for name in previous:
        (target / name).unlink(missing_ok=True)
    written: list[Path] = []
    if per_file == 1:
        for record in records:
            path = target / f"{record['server_id']}.json"
            path.write_text(json.dumps(record, indent=1) + "\n")
            written.append(path)
    else:
        for part, start in enumerate(range(0, len(records), per_file), start=1):
            path = target / f"part-{part:05d}.json"
            path.write_text(json.dumps(records[start:start + per_file]) + "\n")
            written.append(path)
    manifest.write_text(json.dumps({"files": [p.name for p in written]}) + "\n")
    return written
