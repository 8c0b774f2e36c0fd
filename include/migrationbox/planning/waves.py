"""Cutting the condensed dependency graph into migration waves.

Rules every schedule keeps:

1. **Dependencies first.** A move group goes in a wave strictly after every move group
   it depends on (servers of one move group share a wave, so a dependency cycle is
   never split).
2. **Cap.** A wave holds at most ``max_servers_per_wave`` servers, except that a move
   group larger than the cap gets a wave of its own (with a warning): splitting it
   would break rule 1.
3. **Non-production first** (``non_production_first``). Within a topological
   generation (a *level*: 0 for groups that depend on nothing, else one more than the
   deepest dependency), every non-production group lands in an earlier wave than any
   production group. A group holding any production server counts as production.

Two schedulers keep these rules:

- ``"generations"``: the textbook cut. For each level in turn, non-production groups
  then production groups are packed into waves of at most the cap. A level never
  shares a wave with another, so an estate of depth D with both environments at every
  level needs 2·D waves, and a level that overflows the cap leaves a part-filled wave
  behind.
- ``"list"`` (the default): greedy list scheduling. A wave is filled from the groups
  that are *ready* (all dependencies in earlier waves) and *eligible* (a production
  group waits until the non-production groups of its level are in earlier waves),
  highest priority first: the group with the longest chain of dependents above it
  (the critical path, as in Hu's algorithm), then non-production, then lower level,
  then group id. It pipelines the environments — while production level L moves, the
  non-production groups of level L+1 can move alongside — so the same estate needs
  about D+1 waves instead of 2·D, and a wave left part-filled by an overflowing level
  is topped up from the next one. Such waves are ``mixed``; every rule above still
  holds. The fill looks at most ``LOOKAHEAD`` candidates past one that does not fit,
  which keeps a 100,000-server estate linear-ish.

Estimated duration of a wave (hours), from the plan's seven phase durations:
``preflight + provision + validate`` once per wave (they run for all servers at
once), plus the longest *unit* of ``configure + smoke_test + cutover + data_size_gb /
replication bandwidth`` per server. Servers migrate in parallel, each its own unit,
except a move group that holds a data store: its servers go one after another (one
unit; replica sets and clusters are cut over member by member). The bandwidth is
``PlanSettings.replication_mbps`` per replication stream; shared-link contention is
not modelled.

Approval: a wave needs approval when it holds a production data store (database,
cache, queue, storage: anything whose loss is data loss) or a production server
whose criticality is above ``PlanSettings.approval_criticality``. Non-production
waves are the rehearsal and are not gated by these rules.
"""

from __future__ import annotations

import heapq
import re
from collections import Counter, defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

import networkx as nx

from migrationbox.inventory.models import ServerRecord
from migrationbox.planning.graph import DependencyGraph, group_heights, group_levels
from migrationbox.planning.models import PlanSettings, Sizing, Wave

Strategy = Literal["list", "generations"]
LOOKAHEAD = 64

# --------------------------------------------------------------------------- roles

TIER_NAMES = {
    "infrastructure": "Infrastructure services",
    "data": "Data tier",
    "application": "Application tier",
    "edge": "Edge services",
    "other": "Other services",
}
_TIER_ORDER = list(TIER_NAMES)


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


_TIER_WORDS: dict[str, frozenset[str]] = {
    "data": _words(
        "db database databases postgres postgresql pg pgsql mysql mariadb mssql sqlserver "
        "oracle mongodb mongo mongos redis memcached cache elasticsearch elastic opensearch "
        "solr cassandra scylla kafka rabbitmq activemq queue mq nats nfs fileserver filer "
        "storage minio ceph etcd zookeeper hadoop hdfs warehouse clickhouse influxdb "
        "timescaledb couchdb neo4j"
    ),
    "infrastructure": _words(
        "dns bind named unbound ldap openldap ad activedirectory active directory dc "
        "kerberos ntp chrony dhcp monitoring monitor prometheus grafana nagios zabbix "
        "logging syslog loki bastion jump jumphost ci jenkins gitlab backup puppet ansible "
        "chef salt vault consul mail smtp pki ca infra infrastructure identity sso "
        "keycloak freeipa"
    ),
    "edge": _words(
        "lb loadbalancer load balancer haproxy proxy vpn openvpn wireguard ipsec gateway "
        "gw firewall fw cdn waf ingress edge router envoy traefik f5"
    ),
    "application": _words(
        "web www app application api worker workers celery sidekiq backend frontend "
        "service svc tomcat jboss wildfly node nodejs django rails php batch cron job jobs "
        "scheduler nginx apache httpd iis gunicorn uwsgi"
    ),
}
_TOKEN = re.compile(r"[a-z0-9]+")


def tier_of_role(role: str | None) -> str:
    """The tier a free-text role belongs to ("postgresql-primary" → "data").

    The first word of the role that names a known tier wins, so "lb-web" is edge
    and "web-lb" is application.
    """
    for token in _TOKEN.findall((role or "").lower()):
        for tier, words in _TIER_WORDS.items():
            if token in words:
                return tier
    return "other"


def server_role(server: ServerRecord) -> str | None:
    """The server's role as discovered, else inferred from its applications."""
    if server.role:
        return server.role
    for app in server.applications:
        for candidate in (app.kind, app.name):
            if candidate and tier_of_role(candidate) != "other":
                return candidate.lower()
    return None


def is_data_store(server: ServerRecord) -> bool:
    """Whether losing the server loses data (its role, as in the plan, is data tier)."""
    return tier_of_role(server_role(server)) == "data"


# ----------------------------------------------------------------------- durations


@dataclass(frozen=True, slots=True)
class PhaseHours:
    """Per-phase durations in hours (the plan's seven phases, replication excluded)."""

    preflight: float = 2.0
    provision: float = 4.0
    configure: float = 2.0
    smoke_test: float = 0.5
    cutover: float = 0.25
    validate: float = 4.0

    @property
    def per_wave(self) -> float:
        return self.preflight + self.provision + self.validate

    @property
    def per_server(self) -> float:
        return self.configure + self.smoke_test + self.cutover


PHASE_HOURS = PhaseHours()


def replication_hours(data_size_gb: float, replication_mbps: float) -> float:
    """Hours to copy ``data_size_gb`` (decimal GB) at ``replication_mbps`` megabit/s."""
    return data_size_gb * 8000 / replication_mbps / 3600


# ----------------------------------------------------------------------- scheduling


@dataclass(frozen=True, slots=True)
class GroupInfo:
    size: int
    production: bool
    level: int
    height: int


def group_info(dg: DependencyGraph) -> dict[str, GroupInfo]:
    levels = group_levels(dg.condensed)
    heights = group_heights(dg.condensed)
    production = nx.get_node_attributes(dg.graph, "production")
    return {
        g.group_id: GroupInfo(
            size=len(g.server_ids),
            production=any(production[s] for s in g.server_ids),
            level=levels[g.group_id],
            height=heights[g.group_id],
        )
        for g in dg.move_groups
    }


def _schedule_list(condensed: nx.DiGraph, info: Mapping[str, GroupInfo], cap: int,
                   non_prod_first: bool) -> list[list[str]]:
    remaining = {g: condensed.out_degree(g) for g in condensed.nodes}
    pending_np: Counter[int] = Counter(i.level for i in info.values() if not i.production)
    waiting: defaultdict[int, list[str]] = defaultdict(list)
    heap: list[tuple[tuple[int, int, int, str], str]] = []

    def release(g: str) -> None:
        i = info[g]
        if non_prod_first and i.production and pending_np[i.level] > 0:
            waiting[i.level].append(g)
        else:
            heapq.heappush(heap, ((-i.height, int(i.production), i.level, g), g))

    for g in sorted(g for g, n in remaining.items() if n == 0):
        release(g)
    waves: list[list[str]] = []
    while heap:
        wave: list[str] = []
        used = 0
        deferred: list[tuple[tuple[int, int, int, str], str]] = []
        while heap and used < cap and len(deferred) < LOOKAHEAD:
            entry = heapq.heappop(heap)
            size = info[entry[1]].size
            if not wave and size >= cap:
                wave.append(entry[1])  # an oversized group takes a wave of its own
                break
            if used + size <= cap:
                wave.append(entry[1])
                used += size
            else:
                deferred.append(entry)
        for entry in deferred:
            heapq.heappush(heap, entry)
        waves.append(wave)
        # close the wave: first the non-production bookkeeping, then release
        for g in wave:
            i = info[g]
            if not i.production:
                pending_np[i.level] -= 1
                if pending_np[i.level] == 0:
                    for waiting_group in waiting.pop(i.level, []):
                        heapq.heappush(heap, ((-info[waiting_group].height, 1,
                                               i.level, waiting_group), waiting_group))
        for g in wave:
            for dependent in condensed.predecessors(g):
                remaining[dependent] -= 1
                if remaining[dependent] == 0:
                    release(dependent)
    placed = sum(len(w) for w in waves)
    if placed != len(info):  # would be a bug in the rules above, never silent
        raise RuntimeError(f"wave scheduling placed {placed} of {len(info)} move groups")
    return waves


def _schedule_generations(condensed: nx.DiGraph, info: Mapping[str, GroupInfo], cap: int,
                          non_prod_first: bool) -> list[list[str]]:
    by_level: defaultdict[int, list[str]] = defaultdict(list)
    for g in sorted(info):
        by_level[info[g].level].append(g)
    waves: list[list[str]] = []
    for level in sorted(by_level):
        groups = by_level[level]
        buckets = ([[g for g in groups if not info[g].production],
                    [g for g in groups if info[g].production]]
                   if non_prod_first else [groups])
        for bucket in buckets:
            current: list[str] = []
            used = 0
            for g in bucket:
                size = info[g].size
                if size >= cap:
                    waves.append([g])
                    continue
                if used + size > cap:
                    waves.append(current)
                    current, used = [], 0
                current.append(g)
                used += size
            if current:
                waves.append(current)
    return waves


def schedule_groups(dg: DependencyGraph, settings: PlanSettings,
                    strategy: Strategy = "list") -> list[list[str]]:
    """Move-group ids per wave, in wave order (see the module docstring)."""
    info = group_info(dg)
    cap = settings.max_servers_per_wave
    if strategy == "list":
        return _schedule_list(dg.condensed, info, cap, settings.non_production_first)
    if strategy == "generations":
        return _schedule_generations(dg.condensed, info, cap, settings.non_production_first)
    raise ValueError(f"strategy must be 'list' or 'generations', got {strategy!r}")


# ------------------------------------------------------------------------- waves


def _environment(servers: list[ServerRecord]) -> str:
    prod = sum(1 for s in servers if s.is_production)
    if prod == len(servers):
        return "production"
    return "non-production" if prod == 0 else "mixed"


def wave_name(servers: list[ServerRecord], environment: str) -> str:
    """Readable name from the dominant tiers, e.g. "Data tier (production)".

    Tiers holding at least a third of the wave are named, largest first, at most two.
    """
    counts = Counter(tier_of_role(server_role(s)) for s in servers)
    ranked = sorted(counts, key=lambda t: (-counts[t], _TIER_ORDER.index(t)))
    named = [t for t in ranked if counts[t] * 3 >= len(servers)][:2] or ranked[:1]
    return " & ".join(TIER_NAMES[t] for t in named) + f" ({environment})"


def _short_list(items: list[str], limit: int = 5) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")


def _approval(servers: list[ServerRecord], criticality: Mapping[str, float],
              settings: PlanSettings) -> list[str]:
    reasons: list[str] = []
    stores = sorted(s.server_id for s in servers if s.is_production and is_data_store(s))
    if stores:
        reasons.append(f"production data stores: {_short_list(stores)}")
    critical = sorted(
        (s for s in servers
         if s.is_production and criticality[s.server_id] > settings.approval_criticality),
        key=lambda s: (-criticality[s.server_id], s.server_id),
    )
    if critical:
        named = [f"{s.server_id} ({criticality[s.server_id]:.2f})" for s in critical]
        reasons.append(f"production servers with criticality above "
                       f"{settings.approval_criticality:g}: {_short_list(named, 3)}")
    return reasons


def estimate_hours(groups: list[str], dg: DependencyGraph, servers: Mapping[str, ServerRecord],
                   replication_mbps: float, phases: PhaseHours = PHASE_HOURS
                   ) -> tuple[float, bool]:
    """(hours, sequential) for one wave; ``sequential`` when a data-store group of
    several servers migrates member by member."""
    def unit_hours(ids: list[str]) -> float:
        return sum(phases.per_server + replication_hours(servers[s].data_size_gb,
                                                         replication_mbps) for s in ids)

    longest = 0.0
    sequential = False
    for group_id in groups:
        members = dg.group(group_id).server_ids
        if len(members) > 1 and any(is_data_store(servers[s]) for s in members):
            sequential = True
            longest = max(longest, unit_hours(members))
        else:
            longest = max(longest, *(unit_hours([s]) for s in members))
    return round(phases.per_wave + longest, 2), sequential


def plan_waves(dg: DependencyGraph, servers: Mapping[str, ServerRecord],
               sizing: Mapping[str, Sizing | None], settings: PlanSettings,
               strategy: Strategy = "list") -> tuple[list[Wave], list[str]]:
    """Waves for an estate, and the warnings scheduling raised."""
    warnings: list[str] = []
    scheduled = schedule_groups(dg, settings, strategy)
    wave_of = {g: number for number, groups in enumerate(scheduled, start=1) for g in groups}
    waves: list[Wave] = []
    for number, groups in enumerate(scheduled, start=1):
        groups = sorted(groups)
        ids = sorted(s for g in groups for s in dg.group(g).server_ids)
        members = [servers[s] for s in ids]
        for g in groups:
            size = len(dg.group(g).server_ids)
            if size > settings.max_servers_per_wave:
                warnings.append(
                    f"move group {g} holds {size} servers on a dependency cycle, more than "
                    f"max_servers_per_wave={settings.max_servers_per_wave}; it gets wave "
                    f"{number} on its own (a cycle is never split)")
        depends = sorted({wave_of[d] for g in groups for d in dg.condensed.successors(g)}
                         - {number})
        environment = _environment(members)
        hours, _sequential = estimate_hours(groups, dg, servers, settings.replication_mbps)
        reasons = _approval(members, dg.criticality, settings)
        cost = sum(z.monthly_usd + z.storage_monthly_usd
                   for s in ids if (z := sizing.get(s)) is not None)
        waves.append(Wave(
            number=number,
            name=wave_name(members, environment),
            server_ids=ids,
            move_groups=groups,
            depends_on_waves=depends,
            environment=environment,
            criticality=max((dg.criticality[s] for s in ids), default=0.0),
            estimated_hours=hours,
            needs_approval=bool(reasons),
            approval_reasons=reasons,
            predicted_monthly_usd=round(cost, 2),
        ))
    return waves, warnings
