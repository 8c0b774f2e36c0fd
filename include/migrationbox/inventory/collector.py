"""Discover the Linux machine this runs on and describe it as a ``ServerRecord``.

This is the reference agent: static facts come from /proc, /sys and /etc (what the
plan's agent reads), live figures from psutil sampled for a short window, and the
network picture from the socket table: listening sockets become applications and
ports, established outbound connections become ``network_dependencies``. A short
sample is not the plan's 7-day baseline; the record says so in its tags
(``baseline_window``) so sizing can weigh it accordingly.

Unreadable sources (no permission, not Linux, a container without /sys) leave the
matching optional fields empty rather than failing: the record must always validate.
"""

from __future__ import annotations

import contextlib
import glob
import ipaddress
import os
import platform
import re
import shutil
import socket
import subprocess
import time
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from migrationbox.inventory.models import Environment, ServerRecord
from migrationbox.inventory.resolve import AddressBook

# Well-known ports -> (protocol, application kind). Protocol names follow the plan's
# examples ("mysql", "redis"); kinds follow Application.kind.
WELL_KNOWN_PORTS: dict[int, tuple[str, str]] = {
    22: ("ssh", "admin"),
    25: ("smtp", "mail"),
    53: ("dns", "dns"),
    80: ("http", "web"),
    88: ("kerberos", "directory"),
    111: ("rpcbind", "storage"),
    123: ("ntp", "infrastructure"),
    389: ("ldap", "directory"),
    443: ("https", "web"),
    445: ("smb", "storage"),
    514: ("syslog", "monitoring"),
    587: ("smtp", "mail"),
    636: ("ldaps", "directory"),
    1194: ("openvpn", "vpn"),
    1433: ("mssql", "database"),
    1521: ("oracle", "database"),
    1883: ("mqtt", "queue"),
    2049: ("nfs", "storage"),
    2181: ("zookeeper", "coordination"),
    2379: ("etcd", "coordination"),
    3000: ("http", "web"),
    3306: ("mysql", "database"),
    3389: ("rdp", "admin"),
    4222: ("nats", "queue"),
    4317: ("otlp", "monitoring"),
    4369: ("epmd", "queue"),
    5432: ("postgresql", "database"),
    5672: ("amqp", "queue"),
    6379: ("redis", "cache"),
    6432: ("pgbouncer", "database"),
    8000: ("http", "api"),
    8080: ("http", "api"),
    8125: ("statsd", "monitoring"),
    8443: ("https", "web"),
    9042: ("cassandra", "database"),
    9090: ("prometheus", "monitoring"),
    9092: ("kafka", "queue"),
    9093: ("alertmanager", "monitoring"),
    9100: ("node-exporter", "monitoring"),
    9200: ("elasticsearch", "search"),
    11211: ("memcached", "cache"),
    15672: ("amqp-admin", "queue"),
    16379: ("redis-cluster", "cache"),
    25672: ("amqp-cluster", "queue"),
    27017: ("mongodb", "database"),
    27018: ("mongodb", "database"),
    51820: ("wireguard", "vpn"),
}


def guess_protocol(port: int) -> str | None:
    known = WELL_KNOWN_PORTS.get(port)
    return known[0] if known else None


def guess_kind(ports: list[int]) -> str | None:
    kinds = [WELL_KNOWN_PORTS[p][1] for p in sorted(ports) if p in WELL_KNOWN_PORTS]
    specific = [k for k in kinds if k != "admin"]
    return (specific or kinds or [None])[0]


# ----------------------------------------------------------------------------- parsers
# Pure functions over file contents, so they can be tested with fixture text.


def parse_os_release(text: str) -> dict[str, str]:
    values: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        values[key.strip()] = value.strip().strip("\"'")
    return values


def parse_cpuinfo(text: str) -> dict[str, Any]:
    model = None
    mhz: list[float] = []
    flags: set[str] = set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key, value = key.strip(), value.strip()
        if key in ("model name", "Model", "cpu model") and model is None and value:
            model = value
        elif key == "cpu MHz":
            with contextlib.suppress(ValueError):
                mhz.append(float(value))
        elif key in ("flags", "Features") and not flags:
            flags = set(value.split())
    return {
        "model": model,
        "mhz": round(max(mhz), 1) if mhz else None,
        "hypervisor": "hypervisor" in flags,
    }


def parse_meminfo(text: str) -> dict[str, int]:
    """Values in kB, keyed by field name (MemTotal, MemAvailable, ...)."""
    values: dict[str, int] = {}
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        parts = rest.split()
        if parts and parts[0].isdigit():
            values[key.strip()] = int(parts[0])
    return values


def parse_resolv_conf(text: str) -> list[str]:
    servers = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0] == "nameserver":
            servers.append(parts[1])
    return servers


def parse_proc_route(text: str) -> list[str]:
    """IPv4 routes from /proc/net/route as 'dest/len via gw dev iface'."""

    def hex_ip(value: str) -> str:
        return str(ipaddress.IPv4Address(int(value, 16).to_bytes(4, "little")))

    routes = []
    for line in text.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 8:
            continue
        iface, dest, gateway, mask = fields[0], fields[1], fields[2], fields[7]
        try:
            prefix = ipaddress.IPv4Network(f"{hex_ip(dest)}/{hex_ip(mask)}")
            gw = hex_ip(gateway)
        except ValueError:
            continue
        route = str(prefix) if str(prefix) != "0.0.0.0/0" else "default"
        if gw != "0.0.0.0":
            route += f" via {gw}"
        routes.append(f"{route} dev {iface}")
    return routes


def parse_dpkg_status(text: str) -> list[str]:
    """Installed packages as 'name=version' from /var/lib/dpkg/status."""
    packages = []
    for stanza in text.split("\n\n"):
        fields: dict[str, str] = {}
        for line in stanza.splitlines():
            if line and not line[0].isspace() and ":" in line:
                key, _, value = line.partition(":")
                fields[key] = value.strip()
        if fields.get("Package") and fields.get("Status", "").endswith(" installed"):
            packages.append(f"{fields['Package']}={fields.get('Version', '')}".rstrip("="))
    return sorted(packages)


def parse_crontab(text: str, with_user: bool) -> list[str]:
    jobs = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        first = line.split(None, 1)[0]
        if "=" in first and not first.startswith("@"):
            continue  # environment assignment such as SHELL=/bin/sh
        fields = line.split()
        if first.startswith("@"):
            schedule, rest = fields[0], fields[1:]
        else:
            schedule, rest = " ".join(fields[:5]), fields[5:]
        if with_user and rest:
            rest = rest[1:]
        if rest:
            jobs.append(f"{schedule} {' '.join(rest)}")
    return jobs


# ----------------------------------------------------------------------------- readers


def _read(path: str | Path) -> str | None:
    try:
        return Path(path).read_text(errors="replace")
    except OSError:
        return None


def _gb(value: float) -> float:
    return round(value / 1024**3, 2)


def _virtualization(cpu_hypervisor: bool) -> str:
    if Path("/.dockerenv").exists() or Path("/run/.containerenv").exists():
        return "container"
    cgroup = _read("/proc/1/cgroup") or ""
    if any(word in cgroup for word in ("docker", "kubepods", "containerd", "lxc")):
        return "container"
    vendor = " ".join(
        (_read(f"/sys/class/dmi/id/{name}") or "").strip()
        for name in ("sys_vendor", "product_name")
    ).lower()
    for needle, label in (
        ("vmware", "vmware"),
        ("microsoft", "hyper-v"),
        ("qemu", "kvm"),
        ("kvm", "kvm"),
        ("xen", "xen"),
        ("virtualbox", "virtualbox"),
        ("amazon ec2", "kvm"),
        ("google", "kvm"),
    ):
        if needle in vendor:
            return label
    return "virtual" if cpu_hypervisor else "physical"


def _block_parent(device: str) -> str | None:
    """'/dev/nvme0n1p2' -> 'nvme0n1' (the whole disk) using /sys/class/block."""
    name = Path(os.path.realpath(device)).name
    node = Path("/sys/class/block") / name
    if not node.exists():
        return None
    if (node / "partition").exists():
        return node.resolve().parent.name
    return name


def _disk_type(devices: list[str]) -> str | None:
    kinds = set()
    for device in devices:
        parent = _block_parent(device)
        if parent is None:
            continue
        rotational = (_read(f"/sys/block/{parent}/queue/rotational") or "").strip()
        if rotational == "0":
            kinds.add("NVMe" if parent.startswith("nvme") else "SSD")
        elif rotational == "1":
            kinds.add("HDD")
    if not kinds:
        return None
    return sorted(kinds)[0] if len(kinds) == 1 else "mixed"


def _device_mapper_kinds() -> set[str]:
    kinds = set()
    for uuid_file in glob.glob("/sys/block/dm-*/dm/uuid"):
        uuid = (_read(uuid_file) or "").strip()
        if uuid.startswith("LVM-"):
            kinds.add("lvm")
        elif uuid.startswith("CRYPT-"):
            kinds.add("crypt")
    return kinds


def _raid_level() -> str | None:
    mdstat = _read("/proc/mdstat") or ""
    levels = sorted(set(re.findall(r"\bactive (raid\d+)", mdstat)))
    return ",".join(levels) or None


def _filesystems() -> list[dict[str, Any]]:
    import psutil

    seen: set[str] = set()
    result = []
    for part in psutil.disk_partitions(all=False):
        if part.device in seen or part.fstype in ("squashfs", "overlay", "tmpfs"):
            continue
        try:
            usage = psutil.disk_usage(part.mountpoint)
        except OSError:
            continue
        seen.add(part.device)
        result.append({
            "mount_point": part.mountpoint,
            "fs_type": part.fstype or None,
            "size_gb": _gb(usage.total),
            "used_gb": _gb(usage.used),
            "device": part.device or None,
        })
    return result


def local_filesystems() -> list[dict[str, Any]]:
    """The machine's real filesystems (no tmpfs, overlay or squashfs), with their sizes;
    what ``discover --local`` reports and what its endpoint suggestions start from."""
    return _filesystems()


def local_addresses() -> list[str]:
    """This machine's addresses without loopback or link-local (may be empty)."""
    return _interfaces()[0]


def _interfaces() -> tuple[list[str], list[str], float | None]:
    """(addresses, subnets, fastest link in Gbps) without loopback or link-local."""
    import psutil

    addresses: list[str] = []
    subnets: list[str] = []
    for _name, addrs in sorted(psutil.net_if_addrs().items()):
        for addr in addrs:
            if addr.family not in (socket.AF_INET, socket.AF_INET6):
                continue
            ip_text = addr.address.split("%", 1)[0]
            try:
                ip = ipaddress.ip_address(ip_text)
            except ValueError:
                continue
            if ip.is_loopback or ip.is_link_local or ip.is_unspecified:
                continue
            addresses.append(ip.compressed)
            if addr.netmask:
                try:  # IPv6 netmasks come as addresses; count their bits for the prefix
                    bits = bin(int(ipaddress.ip_address(addr.netmask))).count("1")
                    subnets.append(str(ipaddress.ip_interface(f"{ip_text}/{bits}").network))
                except ValueError:
                    pass
    speeds = [s.speed for s in psutil.net_if_stats().values() if s.isup and s.speed > 0]
    bandwidth = round(max(speeds) / 1000, 2) if speeds else None
    return list(dict.fromkeys(addresses)), sorted(set(subnets)), bandwidth


def _ephemeral_range() -> tuple[int, int]:
    text = _read("/proc/sys/net/ipv4/ip_local_port_range") or "32768 60999"
    try:
        low, high = (int(v) for v in text.split()[:2])
    except ValueError:
        return 32768, 60999
    return low, high


def _process_name(pid: int | None, cache: dict[int, str | None]) -> str | None:
    import psutil

    if pid is None:
        return None
    if pid not in cache:
        try:
            cache[pid] = psutil.Process(pid).name() or None
        except (psutil.Error, OSError):
            cache[pid] = None
    return cache[pid]


@dataclass(frozen=True)
class SocketView:
    """What the socket table says about services and peers."""

    applications: list[dict[str, Any]]
    open_ports: list[int]
    dependencies: list[dict[str, Any]]


def _is_local_ip(value: str, own: set[str]) -> bool:
    try:
        ip = ipaddress.ip_address(value.split("%", 1)[0])
    except ValueError:
        return True
    return ip.is_loopback or ip.is_unspecified or ip.is_link_local or ip.compressed in own


def _destination(ip: str, port: int) -> str:
    host = ipaddress.ip_address(ip.split("%", 1)[0])
    if isinstance(host, ipaddress.IPv6Address) and host.ipv4_mapped:
        host = host.ipv4_mapped
    return f"[{host.compressed}]:{port}" if host.version == 6 else f"{host}:{port}"


def read_sockets(
    connections: list[Any],
    own_ips: set[str],
    estate: AddressBook | None = None,
    *,
    skip_loopback_peers: bool = True,
) -> SocketView:
    """Classify psutil connections into listening applications and outbound peers.

    ``connections`` is ``psutil.net_connections("inet")`` (or the same shape). A TCP
    socket in LISTEN, or an unconnected UDP socket bound outside the ephemeral range,
    is a service. An ESTABLISHED TCP socket whose local port is not one we listen on
    is an outbound dependency. Peers that resolve in ``estate`` are servers of the
    estate; all others are marked ``external: true``.
    """
    low, high = _ephemeral_range()
    names: dict[int, str | None] = {}
    listening: dict[str, set[int]] = defaultdict(set)
    open_ports: set[int] = set()
    listen_ports: set[int] = set()
    for conn in connections:
        if not conn.laddr:
            continue
        is_tcp_listen = conn.type == socket.SOCK_STREAM and conn.status == "LISTEN"
        is_udp_bound = (conn.type == socket.SOCK_DGRAM and not conn.raddr
                        and not low <= conn.laddr.port <= high)
        if not (is_tcp_listen or is_udp_bound):
            continue
        port = conn.laddr.port
        listen_ports.add(port)
        name = _process_name(conn.pid, names) or f"port-{port}"
        listening[name].add(port)
        if not _is_loopback(conn.laddr.ip):
            open_ports.add(port)

    peers: dict[str, int] = defaultdict(int)
    for conn in connections:
        if conn.type != socket.SOCK_STREAM or conn.status != "ESTABLISHED" or not conn.raddr:
            continue
        if conn.laddr and conn.laddr.port in listen_ports:
            continue  # an inbound connection to one of our services
        if skip_loopback_peers and _is_local_ip(conn.raddr.ip, own_ips):
            continue
        peers[_destination(conn.raddr.ip, conn.raddr.port)] += 1

    applications = [
        {"name": name, "ports": sorted(ports), "kind": guess_kind(sorted(ports))}
        for name, ports in sorted(listening.items())
    ]
    dependencies = []
    for destination in sorted(peers):
        host, _, port_text = destination.rpartition(":")
        dep: dict[str, Any] = {"destination": destination,
                               "protocol": guess_protocol(int(port_text)),
                               "connections_observed": peers[destination]}
        if estate is None or estate.resolve(host.strip("[]")) is None:
            dep["external"] = True
        dependencies.append(dep)
    return SocketView(applications, sorted(open_ports), dependencies)


def _is_loopback(value: str) -> bool:
    try:
        return ipaddress.ip_address(value.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


def _certificates(limit: int = 50) -> list[dict[str, Any]]:
    """Server certificates in the usual places (not the CA bundle), with expiry."""
    try:
        from cryptography import x509
    except ImportError:  # pragma: no cover - cryptography ships with Airflow
        return []
    patterns = [
        "/etc/letsencrypt/live/*/cert.pem",
        "/etc/nginx/**/*.crt",
        "/etc/nginx/**/*.pem",
        "/etc/apache2/**/*.crt",
        "/etc/httpd/**/*.crt",
        "/etc/haproxy/**/*.pem",
        "/etc/pki/tls/certs/*.crt",
        "/etc/ssl/private/*.pem",
    ]
    found: list[dict[str, Any]] = []
    for pattern in patterns:
        for path in sorted(glob.glob(pattern, recursive=True)):
            if len(found) >= limit or "ca-bundle" in path or "ca-certificates" in path:
                continue
            try:
                cert = x509.load_pem_x509_certificate(Path(path).read_bytes())
            except (OSError, ValueError):
                continue
            found.append({
                "subject": cert.subject.rfc4514_string(),
                "issuer": cert.issuer.rfc4514_string(),
                "expires_at": cert.not_valid_after_utc.isoformat(),
                "path": path,
            })
    return found


def _services() -> list[str]:
    """Running systemd services, when systemd is the init system."""
    if not Path("/run/systemd/system").is_dir() or not shutil.which("systemctl"):
        return []
    try:
        out = subprocess.run(
            ["systemctl", "list-units", "--type=service", "--state=running", "--no-legend",
             "--plain", "--no-pager"],
            capture_output=True, text=True, timeout=10, check=False,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return sorted(line.split()[0] for line in out.splitlines() if line.strip())


def _enabled_units() -> list[str]:
    units = {Path(p).name for p in glob.glob("/etc/systemd/system/*.wants/*")}
    return sorted(units)


def _cron_jobs() -> list[str]:
    jobs = parse_crontab(_read("/etc/crontab") or "", with_user=True)
    for path in sorted(glob.glob("/etc/cron.d/*")):
        jobs += parse_crontab(_read(path) or "", with_user=True)
    for path in sorted(glob.glob("/var/spool/cron/crontabs/*")):
        jobs += parse_crontab(_read(path) or "", with_user=False)
    return jobs


def _installed_packages() -> list[str]:
    status = _read("/var/lib/dpkg/status")
    if status:
        return parse_dpkg_status(status)
    if shutil.which("rpm"):
        try:
            out = subprocess.run(["rpm", "-qa", "--qf", "%{NAME}=%{VERSION}-%{RELEASE}\n"],
                                 capture_output=True, text=True, timeout=30, check=False)
        except (OSError, subprocess.SubprocessError):
            return []
        return sorted(line for line in out.stdout.splitlines() if line)
    return []


def _percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    k = min(len(ordered) - 1, max(0, round(pct / 100 * (len(ordered) - 1))))
    return ordered[k]


def sample_performance(seconds: float) -> dict[str, float]:
    """CPU, memory, disk and network figures over a short window."""
    import psutil

    steps = max(2, int(seconds / 0.2))
    interval = max(seconds, 0.1) / steps
    disk0, net0, t0 = psutil.disk_io_counters(), psutil.net_io_counters(), time.monotonic()
    psutil.cpu_percent(interval=None)
    cpu: list[float] = []
    mem: list[float] = []
    for _ in range(steps):
        time.sleep(interval)
        cpu.append(psutil.cpu_percent(interval=None))
        mem.append(psutil.virtual_memory().percent)
    disk1, net1 = psutil.disk_io_counters(), psutil.net_io_counters()
    elapsed = max(time.monotonic() - t0, 1e-3)
    baseline: dict[str, float] = {
        "cpu_avg_utilization_pct": round(sum(cpu) / len(cpu), 2),
        "cpu_p95_utilization_pct": round(_percentile(cpu, 95), 2),
        "cpu_peak_utilization_pct": round(max(cpu), 2),
        "memory_avg_utilization_pct": round(sum(mem) / len(mem), 2),
        "memory_p95_utilization_pct": round(_percentile(mem, 95), 2),
        "memory_peak_utilization_pct": round(max(mem), 2),
        "sample_days": round(elapsed / 86400, 8),
    }
    if disk0 and disk1:
        ops = (disk1.read_count - disk0.read_count) + (disk1.write_count - disk0.write_count)
        baseline["disk_iops_avg"] = round(max(ops, 0) / elapsed, 2)
        baseline["disk_read_mbps"] = round(max(disk1.read_bytes - disk0.read_bytes, 0)
                                           / elapsed / 1e6, 3)
        baseline["disk_write_mbps"] = round(max(disk1.write_bytes - disk0.write_bytes, 0)
                                            / elapsed / 1e6, 3)
    if net0 and net1:
        moved = (net1.bytes_sent - net0.bytes_sent) + (net1.bytes_recv - net0.bytes_recv)
        baseline["network_throughput_mbps"] = round(max(moved, 0) * 8 / elapsed / 1e6, 3)
    return baseline


_ID_SANITISER = re.compile(r"[^a-z0-9._-]+")


def default_server_id(hostname: str) -> str:
    short = _ID_SANITISER.sub("-", hostname.split(".", 1)[0].lower()).strip("-._")
    return short or "localhost"


def collect_local(
    *,
    environment: str = "production",
    role: str | None = None,
    server_id: str | None = None,
    sample_seconds: float = 1.0,
    estate: AddressBook | None = None,
    include_packages: bool = True,
) -> dict[str, Any]:
    """Discover this machine; returns the record as JSON-ready data, already validated."""
    import psutil

    hostname = socket.gethostname()
    addresses, subnets, bandwidth = _interfaces()
    if not addresses:
        addresses = ["127.0.0.1"]  # a record needs an address; this box has no other
    os_release = parse_os_release(_read("/etc/os-release") or _read("/usr/lib/os-release") or "")
    cpuinfo = parse_cpuinfo(_read("/proc/cpuinfo") or "")
    meminfo = parse_meminfo(_read("/proc/meminfo") or "")
    ram_bytes = meminfo.get("MemTotal", 0) * 1024 or psutil.virtual_memory().total
    filesystems = _filesystems()
    dm_kinds = _device_mapper_kinds()
    sockets = read_sockets(psutil.net_connections(kind="inet"), set(addresses), estate)
    kernel = (_read("/proc/sys/kernel/osrelease") or platform.release()).strip()

    record: dict[str, Any] = {
        "server_id": server_id or default_server_id(hostname),
        "hostname": hostname,
        "ip_addresses": addresses,
        "environment": Environment(environment).value,
        "role": role,
        "os": {
            "type": platform.system() or "Linux",
            "distribution": os_release.get("NAME"),
            "version": os_release.get("VERSION") or os_release.get("VERSION_ID"),
            "kernel": kernel,
            "architecture": platform.machine() or None,
            "installed_packages": _installed_packages() if include_packages else [],
            "running_services": _services(),
            "cron_jobs": _cron_jobs(),
            "systemd_units": _enabled_units(),
        },
        "hardware": {
            "cpu_cores": psutil.cpu_count(logical=True) or os.cpu_count() or 1,
            "cpu_model": cpuinfo["model"],
            "cpu_mhz": cpuinfo["mhz"],
            "ram_gb": _gb(ram_bytes),
            "disk_total_gb": round(sum(f["size_gb"] for f in filesystems), 2),
            "disk_type": _disk_type([f["device"] for f in filesystems if f["device"]]),
            "network_bandwidth_gbps": bandwidth,
            "virtualization": _virtualization(cpuinfo["hypervisor"]),
        },
        "applications": sockets.applications,
        "network_dependencies": sockets.dependencies,
        "performance_baseline": sample_performance(sample_seconds),
        "storage": {
            "filesystems": filesystems,
            "lvm": "lvm" in dm_kinds,
            "raid_level": _raid_level(),
        },
        "network": {
            "dns_servers": parse_resolv_conf(_read("/etc/resolv.conf") or ""),
            "routes": parse_proc_route(_read("/proc/net/route") or ""),
            "subnets": subnets,
        },
        "security": {
            "open_ports": sockets.open_ports,
            "certificates": _certificates(),
            "encryption_at_rest": "crypt" in dm_kinds,
        },
        "tags": {
            "collector": "migrationbox-discover",
            "baseline_window": f"{sample_seconds:g}s snapshot",
        },
        "discovered_at": datetime.now(UTC).isoformat(),
    }
    # Fail here, with the schema's message, rather than hand out an invalid record.
    ServerRecord.model_validate(record)
    return record
