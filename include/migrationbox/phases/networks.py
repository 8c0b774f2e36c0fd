"""The estate's on-premise source networks: one answer for pre-flight, design and provision.

Pre-flight checks that the target VPC overlaps none of them; the design admits them in
the security groups of servers whose clients stay on premise during the migration.
Both must see the same networks, so both ask here. The run conf's
``network.source_networks`` wins when set; otherwise the networks come from the
estate's discovery records in the store (each server's addresses and subnets).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import dataclass, field

from migrationbox.inventory.models import ServerRecord
from migrationbox.phases.context import PhaseContext

#: Where the run conf sets the networks (messages name it).
CONF_KEY = "network.source_networks"

RecordsLoader = Callable[[str], "dict[str, ServerRecord] | None"]


def load_estate_records(estate: str) -> dict[str, ServerRecord] | None:
    """The estate's discovery records from the store (``None`` if it has none).

    Raises when the store is unreachable; callers report that reason.
    """
    from migrationbox.store import repository
    from migrationbox.store.db import session_scope

    with session_scope(read_only=True) as session:
        found = repository.get_estate(session, estate)
    return None if found is None else found.by_id()


def networks_of(record: ServerRecord) -> list[str]:
    """A server's own networks: its addresses (as host networks) and its subnets."""
    nets = [f"{ip}/{32 if ipaddress.ip_address(ip).version == 4 else 128}"
            for ip in record.ip_addresses]
    if record.network is not None:
        nets += list(record.network.subnets)
    return nets


@dataclass
class SourceNetworks:
    """Source networks, estate-wide and per server, and where they came from."""

    shared: list[str] = field(default_factory=list)  # estate-wide CIDRs
    per_server: dict[str, list[str]] = field(default_factory=dict)  # server id → CIDRs
    origin: str = ""  # where they came from, or why there are none

    def entries(self) -> list[tuple[str, str]]:
        """``(owner, cidr)`` pairs: owner ``estate`` or a server id."""
        return [("estate", n) for n in self.shared] + [
            (sid, n) for sid, nets in sorted(self.per_server.items()) for n in nets
        ]

    def invalid(self) -> list[str]:
        """Entries that are not networks, as ``owner: value``."""
        bad = []
        for owner, net in self.entries():
            try:
                ipaddress.ip_network(net, strict=False)
            except ValueError:
                bad.append(f"{owner}: {net!r}")
        return bad

    def cidrs(self) -> list[str]:
        """Every valid network once, collapsed (a host inside a listed subnet adds nothing)."""
        nets: dict[int, list[ipaddress.IPv4Network | ipaddress.IPv6Network]] = {4: [], 6: []}
        for _owner, net in self.entries():
            try:
                parsed = ipaddress.ip_network(net, strict=False)
            except ValueError:
                continue
            nets[parsed.version].append(parsed)
        out: list[str] = []
        for version in (4, 6):
            out += [str(n) for n in ipaddress.collapse_addresses(nets[version])]  # type: ignore[arg-type]
        return out


def from_conf_or_records(ctx: PhaseContext, records: dict[str, ServerRecord] | None,
                         records_origin: str = "store") -> SourceNetworks:
    """The run conf's networks when set, else those of ``records`` (may be ``None``)."""
    given = ctx.options.network.source_networks
    if given is not None:
        if isinstance(given, dict):
            return SourceNetworks(per_server={k: list(v) for k, v in given.items()},
                                  origin=f"conf {CONF_KEY}")
        return SourceNetworks(shared=list(given), origin=f"conf {CONF_KEY}")
    if records is None:
        return SourceNetworks()
    return SourceNetworks(per_server={sid: networks_of(r) for sid, r in records.items()},
                          origin=f"discovery records ({records_origin})")


def source_networks(ctx: PhaseContext,
                    loader: RecordsLoader = load_estate_records) -> SourceNetworks:
    """The wave's source networks (see the module docstring); the store only when needed.

    A store that cannot be read leaves the networks empty with the reason in ``origin``.
    """
    if ctx.options.network.source_networks is not None:
        return from_conf_or_records(ctx, None)
    try:
        records = loader(ctx.estate)
    except Exception as exc:  # the reason goes into the caller's report
        return SourceNetworks(origin=f"store unavailable: {type(exc).__name__}: {exc}")
    if records is None:
        return SourceNetworks(origin=f"store: estate {ctx.estate!r} not found")
    return from_conf_or_records(ctx, records)
