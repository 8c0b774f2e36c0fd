"""Root-cause analysis: breadth-first search over the dependency graph.

The graph is the planning graph (``migrationbox.planning.graph``): an edge ``A → B`` means
*A depends on B*. Starting from the anomalous service, the search walks its dependencies
level by level (BFS over successors) and looks up each one's health. Every dependency in
a bad state (unhealthy or degraded), and the service itself, is a candidate; candidates
are scored with the plan's three kinds of evidence:

* **shared dependency** — walking *backwards* from the candidate (``nx.ancestors``: who
  depends on it, directly or not), how many of the affected services (anomalous, or bad
  health) sit above it. One affected service is weak evidence ("could be a
  service-specific bug"); several affected services sharing it is strong evidence.
* **temporal precedence** — the candidate went bad before the services above it. At least
  ``lead_seconds`` (30 s, as in the plan) earlier than every one of them is very strong
  evidence; earlier than some is partial; *later* than the service means the candidate
  is more likely a victim and is penalised.
* **deeper cause** — a candidate that itself depends on a bad resource that went bad no
  later than it did is probably one more symptom, so its score is halved.

Score (clamped to [0.01, 0.99]):

* base: 0.40 for a bad dependency; for the service itself 0.40, plus 0.30 when every
  dependency was checked and is healthy, but only 0.20 when some dependency is bad;
* shared: +0.35 when two affected services depend on it, +0.40 for three or more;
* precedence: +0.15 when it led every affected dependent by ``lead_seconds``, +0.05 when
  it led some, -0.20 when it went bad after the anomalous service;
* deeper cause: × 0.5.

So a lone bad dependency scores 0.40 (low), a shared one 0.75-0.80 (high), shared and
clearly first 0.90-0.95 (very high).

Dependencies without any health data are *unknown*, never assumed healthy: they are
listed in ``RcaResult.unknown`` so that the incident says what could not be checked.
Edge weights are ignored (a quiet dependency breaks a service just as surely).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

import networkx as nx

from migrationbox.healer.health import HealthResult


@dataclass(frozen=True)
class RcaConfig:
    lead_seconds: float = 30.0
    max_depth: int | None = None  # None: the whole dependency closure
    base_dependency: float = 0.40
    base_self: float = 0.40
    base_self_when_dependency_bad: float = 0.20
    self_dependencies_healthy: float = 0.30
    shared_two: float = 0.35
    shared_many: float = 0.40
    precedence_full: float = 0.15
    precedence_partial: float = 0.05
    precedence_later: float = -0.20
    deeper_cause_factor: float = 0.5


@dataclass(frozen=True)
class RootCause:
    resource: str
    confidence: float
    depth: int  # 0: the anomalous service itself
    path: tuple[str, ...]  # origin → … → resource along dependency edges
    shared_by: tuple[str, ...]  # affected services that depend on it (itself included)
    onset: datetime | None
    evidence: tuple[str, ...]


@dataclass
class RcaResult:
    origin: str
    causes: list[RootCause]
    checked: list[str]  # dependencies visited, BFS order
    unknown: list[str] = field(default_factory=list)  # no health data
    healthy: list[str] = field(default_factory=list)

    @property
    def top(self) -> RootCause | None:
        return self.causes[0] if self.causes else None


def bfs_dependencies(graph: nx.DiGraph, origin: str, max_depth: int | None = None
                     ) -> list[tuple[str, int, tuple[str, ...]]]:
    """Dependencies of ``origin`` in BFS order with depth and the first path found.

    Deterministic: neighbours are visited in sorted order, so equal-depth nodes always come
    out the same way.
    """
    seen = {origin}
    out: list[tuple[str, int, tuple[str, ...]]] = []
    queue: deque[tuple[str, int, tuple[str, ...]]] = deque([(origin, 0, (origin,))])
    while queue:
        node, depth, path = queue.popleft()
        if max_depth is not None and depth >= max_depth:
            continue
        for dep in sorted(graph.successors(node)):
            if dep in seen:
                continue
            seen.add(dep)
            item = (dep, depth + 1, (*path, dep))
            out.append(item)
            queue.append(item)
    return out


def _onset(resource: str, anomalous: Mapping[str, datetime],
           health: Mapping[str, HealthResult]) -> datetime | None:
    times = [anomalous[resource]] if resource in anomalous else []
    result = health.get(resource)
    if result is not None and result.is_bad and result.unhealthy_since is not None:
        times.append(result.unhealthy_since)
    return min(times) if times else None


def analyse(graph: nx.DiGraph, origin: str, *, anomalous: Mapping[str, datetime],
            health: Mapping[str, HealthResult], config: RcaConfig | None = None
            ) -> RcaResult:
    """Rank the root causes of ``origin``'s anomaly.

    ``anomalous`` maps every service with a current anomaly to its onset (it must include
    ``origin``); ``health`` maps resources to their latest health results.
    """
    cfg = config or RcaConfig()
    if origin not in graph:
        raise KeyError(f"{origin!r} is not a node of the dependency graph")
    if origin not in anomalous:
        raise ValueError(f"anomalous: no onset given for the origin {origin!r}")

    def bad(node: str) -> bool:
        result = health.get(node)
        return node in anomalous or (result is not None and result.is_bad)

    affected = {n for n in graph.nodes if bad(n)}
    visited = bfs_dependencies(graph, origin, cfg.max_depth)
    checked = [n for n, _, _ in visited]
    unknown = [n for n in checked if n not in health and n not in anomalous]
    healthy = [n for n in checked if not bad(n) and n not in unknown]
    candidates = [(n, d, p) for n, d, p in visited if bad(n)]
    dependency_bad = bool(candidates)
    candidates.insert(0, (origin, 0, (origin,)))

    causes: list[RootCause] = []
    origin_onset = _onset(origin, anomalous, health)
    for node, depth, path in candidates:
        evidence: list[str] = []
        if node == origin:
            score = cfg.base_self_when_dependency_bad if dependency_bad else cfg.base_self
            evidence.append("the anomalous service itself" + (
                " (a dependency is also bad)" if dependency_bad else
                " (no dependency is bad)"))
            if not dependency_bad and not unknown:
                score += cfg.self_dependencies_healthy
                evidence.append(f"all {len(checked)} dependencies checked and healthy")
            elif unknown:
                evidence.append("no health data for: " + ", ".join(unknown))
        else:
            score = cfg.base_dependency
            status = health[node].status.value if node in health else "anomalous"
            evidence.append(f"dependency at depth {depth} is {status}")
        shared = sorted((nx.ancestors(graph, node) | {node}) & affected) if node != origin \
            else [origin]
        dependents = [s for s in shared if s != node]
        if node != origin:
            if len(dependents) >= 3:
                score += cfg.shared_many
            elif len(dependents) >= 2:
                score += cfg.shared_two
            if dependents:
                evidence.append(f"{len(dependents)} affected service(s) depend on it: "
                                + ", ".join(dependents))
        onset = _onset(node, anomalous, health)
        if node != origin and onset is not None:
            later = [_onset(s, anomalous, health) for s in dependents]
            later_known = [t for t in later if t is not None]
            leads = [(t - onset).total_seconds() for t in later_known]
            if leads and all(lead >= cfg.lead_seconds for lead in leads):
                score += cfg.precedence_full
                evidence.append(f"went bad at least {cfg.lead_seconds:g} s before every "
                                "affected dependent")
            elif origin_onset is not None and onset > origin_onset:
                score += cfg.precedence_later
                evidence.append("went bad after the anomalous service (likely a victim)")
            elif leads and any(lead > 0 for lead in leads):
                score += cfg.precedence_partial
                evidence.append("went bad before some affected dependents")
        deeper = [
            d for d in nx.descendants(graph, node) if d != node and bad(d)
            and (onset is None or (_onset(d, anomalous, health) or onset) <= onset)
        ]
        if deeper and node != origin:
            score *= cfg.deeper_cause_factor
            evidence.append("depends on bad resource(s) that went bad no later: "
                            + ", ".join(sorted(deeper)))
        causes.append(RootCause(
            resource=node, confidence=round(min(0.99, max(0.01, score)), 3), depth=depth,
            path=path, shared_by=tuple(shared), onset=onset, evidence=tuple(evidence)))
    causes.sort(key=lambda c: (-c.confidence, -c.depth, c.resource))
    return RcaResult(origin=origin, causes=causes, checked=checked, unknown=unknown,
                     healthy=healthy)
