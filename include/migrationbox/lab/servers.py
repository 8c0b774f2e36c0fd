"""The lab's view of a server: just what it needs to fake a disk, a database and a service.

The lab can be built from a plan (``ServerPlan``) or straight from discovery records
(``ServerRecord``); both are reduced to ``LabServer`` here so the rest of the lab has one
shape to deal with.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from migrationbox.inventory.models import ServerRecord
from migrationbox.planning.models import PlanDocument, ServerPlan

_DATABASE_TOKENS = {
    "database", "db", "rdbms", "sql", "postgres", "postgresql", "pg", "mysql", "mariadb",
    "mssql", "oracle",
}
_HTTP_TOKENS = {
    "web", "www", "api", "http", "https", "lb", "loadbalancer", "balancer", "haproxy",
    "nginx", "apache", "frontend", "proxy", "ingress",
    # infrastructure services are probed through a health endpoint (an agent or sidecar
    # next to bind/slapd/prometheus/openvpn), so the lab gives them one and cutover
    # moves their service name like any other
    "dns", "ldap", "ad", "monitoring", "prometheus", "grafana", "vpn", "openvpn", "wireguard",
}
_OTHER_TOKENS = {"cache", "redis", "queue", "worker", "workers", "celery", "sidekiq", "mongodb"}
_DB_HOST = re.compile(r"(^|[-_.])(db|pg|psql|postgres|mysql|sql)([-_.0-9]|$)")
_HTTP_HOST = re.compile(r"(^|[-_.])(web|www|api|lb|haproxy|nginx|app|front)([-_.0-9]|$)")

DEFAULT_PORTS = {"postgresql": 5432, "mysql": 3306, "http": 80, "https": 443, "api": 8080}


@dataclass(frozen=True)
class LabDependency:
    hostname: str
    port: int
    kind: str  # "database", "http" or "other"


@dataclass(frozen=True)
class LabServer:
    server_id: str
    hostname: str
    role: str | None = None
    environment: str = "production"
    data_size_gb: float = 0.0
    ports: tuple[int, ...] = ()
    dependencies: tuple[LabDependency, ...] = field(default_factory=tuple)

    @property
    def short_hostname(self) -> str:
        return self.hostname.split(".", 1)[0]

    @property
    def is_database(self) -> bool:
        return classify(self.role, self.hostname, self.ports) == "database"

    @property
    def is_http(self) -> bool:
        return classify(self.role, self.hostname, self.ports) == "http"


def classify(role: str | None, hostname: str, ports: Iterable[int] = ()) -> str:
    """``database``, ``http`` or ``other``: which lab services a server gets.

    The role wins when it says something; otherwise the host name and ports decide
    (``db-prod-01`` or port 5432 is a database, ``web-03`` or port 80/443 a web server).
    """
    text = (role or "").lower()
    if text:
        tokens = set(re.split(r"[^a-z0-9]+", text)) | {text}
        if tokens & _OTHER_TOKENS:
            return "other"
        if tokens & _DATABASE_TOKENS:
            return "database"
        if tokens & _HTTP_TOKENS:
            return "http"
        return "other"
    short = hostname.split(".", 1)[0].lower()
    port_set = set(ports)
    if _DB_HOST.search(short) or port_set & {5432, 3306, 1433, 1521}:
        return "database"
    if _HTTP_HOST.search(short) or port_set & {80, 443, 8080, 8000, 3000}:
        return "http"
    return "other"


def from_plan(plan: PlanDocument, server_ids: Sequence[str] | None = None) -> list[LabServer]:
    """Lab servers for a plan (all of it, or the given server ids)."""
    by_id = {s.server_id: s for s in plan.servers}
    wanted = list(server_ids) if server_ids is not None else list(by_id)
    missing = [sid for sid in wanted if sid not in by_id]
    if missing:
        raise KeyError(f"plan {plan.estate} v{plan.version} has no servers {missing}")
    return [_from_server_plan(by_id[sid], by_id) for sid in sorted(wanted)]


def from_server_plans(servers: Sequence[ServerPlan]) -> list[LabServer]:
    """Lab servers for plan entries given without their plan (dependencies among them)."""
    by_id = {s.server_id: s for s in servers}
    return [_from_server_plan(by_id[sid], by_id) for sid in sorted(by_id)]


def _from_server_plan(s: ServerPlan, by_id: dict[str, ServerPlan]) -> LabServer:
    deps = []
    for dep_id in s.depends_on:
        dep = by_id.get(dep_id)
        if dep is None:
            continue
        kind = classify(dep.role, dep.hostname, dep.ports)
        deps.append(LabDependency(dep.hostname, _main_port(kind, dep.ports), kind))
    return LabServer(
        server_id=s.server_id,
        hostname=s.hostname,
        role=s.role,
        environment=s.environment,
        data_size_gb=s.data_size_gb,
        ports=tuple(s.ports),
        dependencies=tuple(deps),
    )


def from_records(records: Sequence[ServerRecord]) -> list[LabServer]:
    """Lab servers straight from discovery records (dependencies from observed connections)."""
    by_host: dict[str, ServerRecord] = {}
    for r in records:
        for name in (r.hostname, r.short_hostname, *r.ip_addresses):
            by_host[name.lower()] = r
    out = []
    for r in sorted(records, key=lambda x: x.server_id):
        deps = []
        for d in r.network_dependencies:
            peer = by_host.get(d.host.lower())
            if peer is not None:
                kind = classify(peer.role, peer.hostname, peer.listening_ports)
                deps.append(LabDependency(peer.hostname, d.port, kind))
            else:
                deps.append(LabDependency(d.host, d.port, classify(None, d.host, [d.port])))
        out.append(
            LabServer(
                server_id=r.server_id,
                hostname=r.hostname,
                role=r.role,
                environment=str(r.environment),
                data_size_gb=r.data_size_gb,
                ports=tuple(r.listening_ports),
                dependencies=tuple(deps),
            )
        )
    return out


def _main_port(kind: str, ports: Sequence[int]) -> int:
    if kind == "database":
        for p in ports:
            if p in (5432, 3306, 1433, 1521, 27017):
                return p
        return DEFAULT_PORTS["postgresql"]
    if ports:
        return ports[0]
    return DEFAULT_PORTS["http"] if kind == "http" else 22
