"""``build_plan``: an estate in, a plan document out.

A pure function: it reads nothing but its arguments (and the shipped price catalog)
and writes nothing, so the same estate, settings, version and ``now`` always give the
same plan, byte for byte. Everything is ordered by server_id / group id. Storing the
plan, exporting it and writing the wave spec are the caller's business.

It scales linearly-ish: the graph work is networkx (PageRank by sparse power
iteration, Tarjan's SCCs), sizing is a cached catalog lookup per server, and waves are
one heap pass over the move groups.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime

from migrationbox.inventory.loaders import gc_paused
from migrationbox.inventory.models import Estate, ServerRecord
from migrationbox.planning.graph import UnresolvedDependency, build_dependency_graph
from migrationbox.planning.models import (
    LicenceNote,
    PlanDocument,
    PlanSettings,
    ServerPlan,
    Sizing,
    SourceOs,
)
from migrationbox.planning.waves import plan_waves, server_role
from migrationbox.sizing.clouds.assumptions import PricingAssumptions

MAX_LISTED_WARNINGS = 20


def _size_all(servers: list[ServerRecord], settings: PlanSettings
              ) -> tuple[dict[str, Sizing | None], list[str], list[str]]:
    """Size every server with the chosen option of the sizing engine (issue 4).

    The engine prices the three options per server from the shipped catalogs, with the
    registry's champion model when one is registered, and the plan provisions
    ``settings.sizing_option`` (its safe variant where the option is unsafe for that
    server). A server that cannot be sized still gets planned: its place in the waves
    does not depend on its size, and the warning says what to do. Returns sizings,
    warnings and the engine's provenance notes.
    """
    from migrationbox.sizing.options import SizingEngine, planning_sizing, size_estate

    engine = SizingEngine.with_champion(clouds=[settings.cloud],
                                        regions={settings.cloud: settings.region})
    result = size_estate(servers, engine)
    sized: dict[str, Sizing | None] = dict.fromkeys((s.server_id for s in servers), None)
    failures = [f"not sized: server {sid}: {msg}" for sid, msg in result.failed]
    for server_sizing in result.servers:
        sid = server_sizing.profile.server_id
        try:
            sized[sid] = planning_sizing(server_sizing, settings.cloud, settings.sizing_option,
                                         settings.use_safe_variant)
        except ValueError as exc:
            failures.append(f"not sized: {exc}")
    return sized, _capped(failures, "servers could not be sized"), list(result.notes)


#: the discovery tag by which an estate's owners ask for a live migration of a server
#: (24/7 services that cannot take a maintenance window): ``migration: live``
LIVE_TAG = ("migration", "live")


def is_live(server: ServerRecord) -> bool:
    """Migrated live (pre-copy while it runs, a short measured freeze at cutover)."""
    key, value = LIVE_TAG
    return server.tags.get(key, "").strip().lower() == value


def source_os(server: ServerRecord) -> SourceOs:
    """What the target image must fit: the distribution (else the OS type) and version."""
    os_ = server.os
    return SourceOs(type=os_.type, name=(os_.distribution or os_.type).strip(),
                    version=os_.version, architecture=os_.architecture)


def licence_note(server: ServerRecord, sizing: Sizing | None,
                 assumptions: PricingAssumptions | None = None) -> LicenceNote | None:
    """The licence flag of one server, with an assumed monthly cost where one is known.

    Windows Server and SQL Server (and RHEL) move as licence-included images unless the
    customer brings its own licences; either way the plan must say so. The cost is the
    licence-included surcharge of ``PricingAssumptions`` (an ASSUMPTION, labelled as
    such, since no licence prices are in the price data) on the planned machine's vCPUs.
    """
    from migrationbox.sizing.clouds.base import HOURS_PER_MONTH
    from migrationbox.sizing.features import licences_of
    from migrationbox.sizing.tco import licence_hourly

    lic = licences_of(server)
    if not (lic.windows or lic.sql_server or lic.rhel):
        return None
    a = assumptions or PricingAssumptions()
    parts = []
    rates = []
    if lic.windows:
        parts.append("Windows Server")
        rates.append(f"Windows ${a.windows_usd_per_vcpu_hour}/vCPU-h")
    if lic.sql_server:
        parts.append(f"SQL Server {lic.sql_server.capitalize()}")
        rate = (a.sql_enterprise_usd_per_vcpu_hour if lic.sql_server == "enterprise"
                else a.sql_standard_usd_per_vcpu_hour)
        rates.append(f"SQL Server {lic.sql_server} ${rate}/vCPU-h, at least "
                     f"{a.sql_min_vcpu} vCPU")
    if lic.rhel:
        parts.append("RHEL")
        rates.append(f"RHEL ${a.rhel_usd_per_hour_small}/h up to {a.rhel_small_max_vcpu} "
                     f"vCPU, ${a.rhel_usd_per_hour_large}/h above")
    note = (f"{' + '.join(parts)}: needs a licence-included image or the customer's own "
            "licences (bring-your-own needs licence mobility or dedicated hosts); the "
            "sizing price above is the machine alone")
    basis = (f"ASSUMPTION, not a quoted price: {'; '.join(rates)} x {HOURS_PER_MONTH:g} h "
             f"({a.licence_basis}); no licence prices are in the price data; override with "
             "`migrationbox size --assumptions FILE`")
    monthly = None
    if sizing is not None:
        monthly = round(licence_hourly(lic, sizing.vcpu, a) * HOURS_PER_MONTH, 2)
        basis += f"; applied to {sizing.vcpu} vCPU of {sizing.instance_type}"
    else:
        basis += "; server not sized, so no vCPU count to apply it to"
    return LicenceNote(windows=lic.windows, sql_server=lic.sql_server, rhel=lic.rhel,
                       note=note, assumed_monthly_usd=monthly, basis=basis)


def _licence_summary(plans: list[ServerPlan]) -> list[str]:
    flagged = [p for p in plans if p.licence is not None]
    if not flagged:
        return []
    windows = sum(1 for p in flagged if p.licence and p.licence.windows)
    sql = sum(1 for p in flagged if p.licence and p.licence.sql_server)
    rhel = sum(1 for p in flagged if p.licence and p.licence.rhel)
    known = [p.licence.assumed_monthly_usd for p in flagged
             if p.licence and p.licence.assumed_monthly_usd is not None]
    line = (f"licences: {len(flagged)} server(s) need licence-included images or own "
            f"licences (Windows Server {windows}, SQL Server {sql}, RHEL {rhel}); assumed "
            f"${sum(known):,.2f}/month on top of the machines for {len(known)} sized "
            "server(s) (ASSUMPTION, see each server's licence.basis)")
    return [line]


def _capped(lines: list[str], what: str) -> list[str]:
    if len(lines) <= MAX_LISTED_WARNINGS:
        return lines
    rest = len(lines) - MAX_LISTED_WARNINGS
    return [*lines[:MAX_LISTED_WARNINGS], f"... and {rest} more {what}"]


def _dependency_warnings(unresolved: list[UnresolvedDependency]) -> list[str]:
    """One line per server with unresolved peers, so 100,000 of them stay readable."""
    by_server: defaultdict[str, list[UnresolvedDependency]] = defaultdict(list)
    for item in unresolved:
        by_server[item.server_id].append(item)
    lines: list[str] = []
    for server_id in sorted(by_server):
        items = by_server[server_id]
        described = ", ".join(
            f"{i.destination} ({i.reason})" for i in sorted(items, key=lambda i: i.destination)
        )
        lines.append(f"server {server_id}: dependencies not migrated with this estate "
                     f"(check they stay reachable from the target): {described}")
    return _capped(lines, "servers with dependencies outside the estate")


def build_plan(estate: Estate, settings: PlanSettings | None = None, version: int = 1,
               now: datetime | None = None) -> PlanDocument:
    """Plan ``estate``: criticality, move groups, sizing and waves.

    Raises ``ValueError`` naming the record when server_ids repeat. Dependencies on
    peers outside the estate, servers that cannot be sized and move groups larger
    than a wave are planned anyway and listed in ``warnings``.
    """
    # planning allocates millions of small, live objects: pause the cyclic GC meanwhile
    with gc_paused():
        return _build(estate, settings or PlanSettings(), version, now or datetime.now(UTC))


def _build(estate: Estate, settings: PlanSettings, version: int, created_at: datetime
           ) -> PlanDocument:
    servers = sorted(estate.servers, key=lambda s: s.server_id)
    dg = build_dependency_graph(servers)
    by_id = {s.server_id: s for s in servers}

    warnings = _dependency_warnings(dg.unresolved)
    sizing, sizing_warnings, sizing_notes = _size_all(servers, settings)
    warnings.extend(sizing_warnings)
    waves, wave_warnings = plan_waves(dg, by_id, sizing, settings)
    warnings.extend(wave_warnings)

    assumptions = PricingAssumptions()
    server_plans = [
        ServerPlan(
            server_id=s.server_id,
            hostname=s.hostname,
            environment=s.environment.value,
            role=server_role(s),
            criticality=dg.criticality[s.server_id],
            move_group=dg.group_of[s.server_id],
            depends_on=dg.depends_on(s.server_id),
            ports=s.listening_ports,
            data_size_gb=round(s.data_size_gb, 3),
            sizing=sizing[s.server_id],
            os=source_os(s),
            licence=licence_note(s, sizing[s.server_id], assumptions),
            live=is_live(s),
        )
        for s in servers
    ]
    return PlanDocument(
        estate=estate.name,
        version=version,
        created_at=created_at,
        settings=settings,
        servers=server_plans,
        move_groups=dg.move_groups,
        waves=waves,
        warnings=warnings,
        notes=[*sizing_notes, *_licence_summary(server_plans)],
    )
