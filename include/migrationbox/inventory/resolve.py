"""Turn observed peers ("db-01:5432", "10.20.2.10:5432") into servers of the estate.

Agents report dependencies the way they see them on the wire: an IP, a short name from
a config file, a fully qualified name from DNS. Planning needs server_ids. The address
book indexes every server by server_id, full hostname, short hostname (before the first
dot) and each IP, and answers only when exactly one server matches: an ambiguous name
is reported, never guessed, because a wrong edge silently reorders waves.

Matching is tried in that order (server_id, hostname, short hostname, IP); hostnames
compare case-insensitively and IPs by value (``::1`` equals ``0:0:0:0:0:0:0:1``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from ipaddress import ip_address
from typing import Any

from migrationbox.inventory.loaders import gc_paused
from migrationbox.inventory.models import NetworkDependency, ServerRecord

_HOST_PORT_RE = re.compile(r"^(?P<host>[A-Za-z0-9._-]+|\[[0-9a-fA-F:.]+\]):(?P<port>\d{1,5})$")
_KINDS = ("server_id", "hostname", "short_hostname", "ip")


def split_host_port(value: str) -> tuple[str, int | None]:
    """Split 'host:port' or '[v6]:port'; a bare host (or bare IPv6) has port None."""
    value = value.strip()
    match = _HOST_PORT_RE.match(value)
    if match:
        return match["host"].strip("[]"), int(match["port"])
    return value.strip("[]"), None


def looks_like_host_port(value: str) -> bool:
    return _HOST_PORT_RE.match(value.strip()) is not None


@lru_cache(maxsize=1 << 16)
def _ip_key(value: str) -> str | None:
    """Canonical text of an IP address, or None (cached: estates repeat a few IPs a lot)."""
    if not value or not (value[0].isdigit() or ":" in value):
        return None  # cheap reject: hostnames rarely start with a digit
    try:
        return ip_address(value).compressed
    except ValueError:
        return None


def is_external(dep: NetworkDependency) -> bool:
    """Whether the agent (or a human) marked the peer as outside the estate.

    ``external`` is not part of the schema's typed fields; it is an extra key that
    ``NetworkDependency`` keeps (``extra="allow"``). Only a JSON ``true`` counts.
    """
    return (dep.model_extra or {}).get("external") is True


@dataclass
class AddressBook:
    """Index of the names under which each server can be reached."""

    _index: dict[str, dict[str, set[str]]] = field(
        default_factory=lambda: {kind: {} for kind in _KINDS}
    )
    ports: dict[str, tuple[int, ...]] = field(default_factory=dict)

    @classmethod
    def from_servers(cls, servers: Iterable[ServerRecord]) -> AddressBook:
        book = cls()
        with gc_paused():
            for server in servers:
                book.add(server.server_id, server.hostname, server.ip_addresses)
                book.ports[server.server_id] = tuple(server.listening_ports)
        return book

    @classmethod
    def from_raw(cls, records: Iterable[Mapping[str, Any]]) -> AddressBook:
        """Index unvalidated records by whatever identifying fields are readable.

        Used to tell "points at a record that was quarantined" apart from "points at
        nothing we know".
        """
        book = cls()
        for data in records:
            server_id = data.get("server_id")
            if not isinstance(server_id, str) or not server_id:
                continue
            hostname = data.get("hostname")
            ips = data.get("ip_addresses")
            book.add(
                server_id,
                hostname if isinstance(hostname, str) else None,
                [ip for ip in ips if isinstance(ip, str)] if isinstance(ips, list) else [],
            )
        return book

    def add(self, server_id: str, hostname: str | None, ips: Iterable[str]) -> None:
        idx = self._index
        idx["server_id"].setdefault(server_id.lower(), set()).add(server_id)
        if hostname:
            name = hostname.lower().rstrip(".")
            idx["hostname"].setdefault(name, set()).add(server_id)
            idx["short_hostname"].setdefault(name.split(".", 1)[0], set()).add(server_id)
        for ip in ips:
            key = _ip_key(ip)
            if key:
                idx["ip"].setdefault(key, set()).add(server_id)

    def candidates(self, host: str) -> frozenset[str]:
        """All server_ids the name could mean, at the most specific matching level."""
        host = host.strip().strip("[]").rstrip(".")
        lowered = host.lower()
        for kind in ("server_id", "hostname", "short_hostname"):
            found = self._index[kind].get(lowered)
            if found:
                return frozenset(found)
        key = _ip_key(host)
        if key is not None:
            found = self._index["ip"].get(key)
            if found:
                return frozenset(found)
        return frozenset()

    def resolve(self, host: str) -> str | None:
        """The one server_id ``host`` names, or None if unknown or ambiguous."""
        found = self.candidates(host)
        if len(found) == 1:
            return next(iter(found))
        return None

    def collisions(self, kind: str) -> dict[str, set[str]]:
        """Names of one kind (hostname, short_hostname, ip) shared by several servers."""
        return {name: ids for name, ids in self._index[kind].items() if len(ids) > 1}


def application_reference(item: str, book: AddressBook) -> tuple[str, int | None] | None:
    """The (server_id, port) an ``applications[].dependencies`` item names, if any.

    Items are either library names ("openssl") or servers ("db-01", "db-01:5432",
    "srv-007"). An item is a server reference only when the address book resolves it;
    anything else is a library.
    """
    host, port = split_host_port(item)
    target = book.resolve(host)
    if target is None:
        return None
    return target, port


def _application_dependency(
    item: str, app_name: str, target: str, port: int | None, book: AddressBook
) -> NetworkDependency:
    """An application-level edge expressed as a NetworkDependency.

    The destination is ``<target server_id>:<port>``, the port being the one named in
    the item, else the target's lowest listening port, else 0 ("unspecified"). It is
    built without validation: the schema's 1-65535 rule is for observed peers, and the
    values here come from already validated records.
    """
    if port is None:
        listening = book.ports.get(target, ())
        port = listening[0] if listening else 0
    return NetworkDependency.model_construct(
        destination=f"{target}:{port}",
        protocol="application",
        frequency_per_hour=None,
        via_application=app_name,
        declared_as=item,
    )


Edge = tuple[str, str, NetworkDependency]


def dependency_edges(
    servers: Iterable[ServerRecord], book: AddressBook | None = None
) -> list[Edge]:
    """Every resolvable dependency as (source server_id, destination server_id, dep).

    Includes ``network_dependencies`` and ``applications[].dependencies`` items that
    name a server. "A depends on B" means B must be migrated no later than A. Edges are
    listed one per dependency (a pair may repeat, e.g. two ports); self-references and
    peers outside the estate are left out. Validation reports the unresolvable ones.
    """
    servers = list(servers)
    with gc_paused():
        if book is None:
            book = AddressBook.from_servers(servers)
        return _edges(servers, book)


def _edges(servers: list[ServerRecord], book: AddressBook) -> list[Edge]:
    edges: list[Edge] = []
    for server in servers:
        source = server.server_id
        for dep in server.network_dependencies:
            target = book.resolve(dep.host)
            if target is not None and target != source:
                edges.append((source, target, dep))
        for app in server.applications:
            for item in app.dependencies:
                ref = application_reference(item, book)
                if ref is None or ref[0] == source:
                    continue
                target, port = ref
                edges.append(
                    (source, target, _application_dependency(item, app.name, target, port, book))
                )
    return edges
