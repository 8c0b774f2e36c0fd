"""Phase 6, cutover: move traffic to the target in weighted-DNS steps, with a way back.

Each web/api/load-balancer server of the wave (its ``http`` endpoints) has a service name
``<short>.<estate>.migrationbox.internal`` in the estate's zone. Cutover replaces the
plain record provisioning made with two weighted records, ``source`` and ``target``
(through the cloud adapter, in one atomic change), and moves the target's weight
through the steps (5 → 25 → 50 → 100 % by default). After each step it waits the dwell
time and probes every target service for real: ``N`` requests to ``/`` plus
``/health/deep``. A step fails when the error rate exceeds the threshold (5 %), the P95
latency exceeds twice the source's baseline P95 (with a floor), or the deep health is not
``healthy``; then every service goes back to 100 % source at once, the reason is
recorded (``cutover.json`` in the run's artifacts) and ``PhaseFailed`` is raised.

Idempotent: the current weights are read first; steps at or below them are not
repeated, and a wave already at 100 % target is only re-probed. ``rollback(ctx)`` puts
100 % of traffic back on the source wherever weighted records exist.

Options: ``cutover_steps`` ([5, 25, 50, 100]), ``cutover_dwell_seconds`` (5),
``health_probe_requests`` (20), ``cutover_max_error_rate`` (0.05),
``cutover_latency_factor`` (2.0), ``cutover_latency_floor_ms`` (250),
``health_timeout_seconds`` (5), ``cutover_ttl`` (30).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from ipaddress import ip_address
from typing import Any
from urllib.parse import urlparse

from migrationbox.lab.endpoints import Endpoint, by_server, dns_zone, target_dns_name
from migrationbox.phases._cloud import adapter_for, progress, write_json
from migrationbox.phases.context import PhaseContext, PhaseFailed, PhaseResult
from migrationbox.phases.replicate import endpoints_or_fail
from migrationbox.phases.smoke_test import find_zone_id

PHASE = "cutover"
DEFAULT_STEPS = (5, 25, 50, 100)
STATE_FILE = "cutover.json"


@dataclass
class Service:
    server_id: str
    record: str
    endpoint: Endpoint
    source_value: str
    target_value: str


@dataclass
class ProbeStats:
    url: str
    requests: int = 0
    errors: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    deep_status: str | None = None
    first_error: str | None = None

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 1.0

    @property
    def p95_ms(self) -> float:
        if not self.latencies_ms:
            return 0.0
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]

    def summary(self) -> dict[str, Any]:
        return {"url": self.url, "requests": self.requests, "errors": self.errors,
                "error_rate": round(self.error_rate, 3), "p95_ms": round(self.p95_ms, 1),
                "deep_status": self.deep_status, "first_error": self.first_error}


@dataclass
class Settings:
    steps: list[int]
    dwell: float
    requests: int
    max_error_rate: float
    latency_factor: float
    latency_floor_ms: float
    timeout: float

    @classmethod
    def from_options(cls, options: dict[str, Any]) -> Settings:
        steps = [int(s) for s in options.get("cutover_steps") or DEFAULT_STEPS]
        if not steps or any(not 0 < s <= 100 for s in steps) or steps != sorted(set(steps)):
            raise PhaseFailed(PHASE, f"options.cutover_steps must rise within 1..100, got {steps}")
        if steps[-1] != 100:
            steps.append(100)
        return cls(
            steps=steps,
            dwell=float(options.get("cutover_dwell_seconds", 5.0)),
            requests=max(1, int(options.get("health_probe_requests", 20))),
            max_error_rate=float(options.get("cutover_max_error_rate", 0.05)),
            latency_factor=float(options.get("cutover_latency_factor", 2.0)),
            latency_floor_ms=float(options.get("cutover_latency_floor_ms", 250.0)),
            timeout=float(options.get("health_timeout_seconds", 5.0)),
        )


def _host(uri: str | None) -> str | None:
    return urlparse(uri).hostname if uri else None


def _kind(value: str) -> str:
    try:
        ip_address(value)
        return "ip"
    except ValueError:
        return "name"


def services(ctx: PhaseContext, endpoints: list[Endpoint], adapter: Any,
             zone_id: str | None) -> list[Service]:
    """The wave's services and the values their weighted records point at.

    Target value: what provisioning put in the service's record (the instance address),
    else the target endpoint's host. Source value: ``details.source_ip`` of the endpoint,
    else the one already in a ``source`` weighted record, else the source endpoint's host.
    """
    out: list[Service] = []
    for s in ctx.servers:
        for ep in by_server(endpoints, s.server_id, "http"):
            record = target_dns_name(ctx.estate, s.hostname)
            existing = adapter.get_records(zone_id, record) if zone_id else []
            weighted = {r["set_identifier"]: r for r in existing if r.get("set_identifier")}
            plain = [r for r in existing if not r.get("set_identifier") and r["values"]
                     and r["type"] in ("A", "AAAA", "CNAME")]
            target = (weighted.get("target", {}).get("values") or
                      (plain[0]["values"] if plain else None) or [_host(ep.target_uri)])[0]
            source = (ep.details.get("source_ip") or
                      (weighted.get("source", {}).get("values") or [None])[0] or
                      _host(ep.source_uri))
            if not source or not target:
                raise PhaseFailed(PHASE, f"{ep.label()}: cannot tell the source or target "
                                         f"address for {record} (source={source}, target={target})")
            if _kind(source) != _kind(target):
                raise PhaseFailed(
                    PHASE,
                    f"{record}: source {source!r} and target {target!r} are not the same "
                    "record type; set details.source_ip on the endpoint to an address of "
                    "the same kind",
                )
            out.append(Service(s.server_id, record, ep, source, target))
    return out


def probe(base_url: str, settings: Settings, deep: bool = True,
          latency_limit_ms: float | None = None) -> ProbeStats:
    """``settings.requests`` GETs of ``/`` (stopping early once failure is certain)."""
    import httpx

    stats = ProbeStats(url=base_url)
    allowed_errors = settings.max_error_rate * settings.requests
    slow = 0
    with httpx.Client(timeout=settings.timeout) as client:
        for _ in range(settings.requests):
            start = time.perf_counter()
            try:
                r = client.get(f"{base_url}/")
                failed = r.status_code >= 500
                if failed and stats.first_error is None:
                    stats.first_error = f"HTTP {r.status_code}"
            except httpx.HTTPError as exc:
                failed = True
                if stats.first_error is None:
                    stats.first_error = f"{type(exc).__name__}: {exc}"
            ms = (time.perf_counter() - start) * 1000
            stats.requests += 1
            stats.latencies_ms.append(ms)
            stats.errors += int(failed)
            if latency_limit_ms is not None and ms > latency_limit_ms:
                slow += 1
            if stats.errors > allowed_errors or slow > 0.05 * settings.requests + 1:
                break
        if deep:
            try:
                body = client.get(f"{base_url}/health/deep").json()
                stats.deep_status = body.get("status") if isinstance(body, dict) else "invalid"
            except (httpx.HTTPError, ValueError) as exc:
                stats.deep_status = f"error: {type(exc).__name__}"
    return stats


def _judge(svc: Service, stats: ProbeStats, settings: Settings, limit_ms: float) -> str | None:
    if stats.error_rate > settings.max_error_rate:
        return (f"{svc.record}: error rate {stats.error_rate:.0%} > "
                f"{settings.max_error_rate:.0%} ({stats.errors}/{stats.requests}, "
                f"first: {stats.first_error})")
    if stats.p95_ms > limit_ms:
        return f"{svc.record}: P95 latency {stats.p95_ms:.0f} ms > limit {limit_ms:.0f} ms"
    if stats.deep_status != "healthy":
        return f"{svc.record}: /health/deep status is {stats.deep_status!r}"
    return None


def _weights(adapter: Any, zone_id: str, svc: Service) -> dict[str, int]:
    return {w.set_identifier: w.weight for w in adapter.get_weighted_records(zone_id, svc.record)}


def _set_all(adapter: Any, zone_id: str, svcs: list[Service], pct: int, ttl: int) -> None:
    for svc in svcs:
        adapter.upsert_weighted_records(zone_id, svc.record, svc.source_value, svc.target_value,
                                        pct, ttl=ttl)


def run(ctx: PhaseContext) -> PhaseResult:
    settings = Settings.from_options(ctx.options)
    endpoints = endpoints_or_fail(ctx, PHASE)
    if not any(by_server(endpoints, s.server_id, "http") for s in ctx.servers):
        return PhaseResult(phase=PHASE, ok=True,
                           summary="no HTTP services in this wave: nothing to shift",
                           details={"services": []})
    if ctx.dry_run:
        return PhaseResult(phase=PHASE, ok=True,
                           summary=f"dry run: would shift traffic in steps {settings.steps}",
                           details={"steps": settings.steps, "dry_run": True})
    adapter = adapter_for(ctx, PHASE)
    zone_id = find_zone_id(ctx)
    if zone_id is None:
        raise PhaseFailed(PHASE, f"hosted zone {dns_zone(ctx.estate)} does not exist: run "
                                 "provision (not as a dry run) before cutover")
    svcs = services(ctx, endpoints, adapter, zone_id)
    ttl = int(ctx.options.get("cutover_ttl", 30))
    start_weights = {s.record: _weights(adapter, zone_id, s) for s in svcs}
    current = min(w.get("target", 0) for w in start_weights.values())
    steps = [w for w in settings.steps if w > current]
    history: list[dict[str, Any]] = []
    baseline = {
        s.record: probe(s.endpoint.source_uri or "", settings, deep=False).p95_ms
        if s.endpoint.source_uri else 0.0
        for s in svcs
    }
    limits = {r: max(settings.latency_factor * b, settings.latency_floor_ms)
              for r, b in baseline.items()}
    report: dict[str, Any] = {
        "zone_id": zone_id, "services": [
            {"server_id": s.server_id, "record": s.record, "source": s.source_value,
             "target": s.target_value} for s in svcs],
        "start_weights": start_weights, "baseline_p95_ms": baseline,
        "latency_limit_ms": limits, "steps": history, "settings": asdict(settings),
    }
    plan = steps or [100]  # already at 100%: re-probe only
    for pct in plan:
        if steps:
            _set_all(adapter, zone_id, svcs, pct, ttl)
            progress(ctx, f"cutover: {pct}% of traffic to the target for {len(svcs)} services",
                     {"weight": pct})
            time.sleep(settings.dwell)
        weights = {s.record: _weights(adapter, zone_id, s) for s in svcs}
        probes = {s.record: probe((s.endpoint.target_uri or "").rstrip("/"), settings,
                                  latency_limit_ms=limits[s.record]) for s in svcs}
        problems = [p for s in svcs
                    if (p := _judge(s, probes[s.record], settings, limits[s.record]))]
        wrong = [f"{r}: weights {w}" for r, w in weights.items()
                 if w.get("target") != pct or w.get("source") != 100 - pct]
        history.append({
            "weight": pct, "at": datetime.now(UTC).isoformat(), "weights": weights,
            "probes": {r: p.summary() for r, p in probes.items()},
            "problems": problems + wrong,
        })
        if problems or wrong:
            _set_all(adapter, zone_id, svcs, 0, ttl)
            back = {s.record: _weights(adapter, zone_id, s) for s in svcs}
            reason = "; ".join(problems + wrong)
            report |= {"ok": False, "failed_at": pct, "reason": reason, "rolled_back": True,
                       "final_weights": back}
            write_json(ctx.run_artifacts() / STATE_FILE, report)
            progress(ctx, f"cutover failed at {pct}%: {reason}; traffic is back on the source",
                     {"weight": 0, "reason": reason})
            raise PhaseFailed(
                PHASE, f"health check failed at {pct}% ({reason}); 100% of traffic restored "
                       "to the source", report)
    report |= {"ok": True, "final_weights": {s.record: _weights(adapter, zone_id, s)
                                             for s in svcs}}
    write_json(ctx.run_artifacts() / STATE_FILE, report)
    summary = (f"{len(svcs)} services at 100% target after steps {steps}" if steps
               else f"{len(svcs)} services already at 100% target; re-probed healthy")
    return PhaseResult(phase=PHASE, ok=True, summary=summary, details=report)


def rollback(ctx: PhaseContext) -> PhaseResult:
    """100 % of traffic to the source wherever this wave has weighted records."""
    if ctx.dry_run:
        return PhaseResult(phase=PHASE, ok=True, summary="dry run: nothing to roll back")
    endpoints = endpoints_or_fail(ctx, PHASE)
    if not any(by_server(endpoints, s.server_id, "http") for s in ctx.servers):
        return PhaseResult(phase=PHASE, ok=True, summary="no HTTP services: nothing to restore")
    adapter = adapter_for(ctx, PHASE)
    zone_id = find_zone_id(ctx)
    if zone_id is None:
        return PhaseResult(phase=PHASE, ok=True,
                           summary="no hosted zone: traffic was never moved")
    restored, untouched = [], []
    ttl = int(ctx.options.get("cutover_ttl", 30))
    for svc in services(ctx, endpoints, adapter, zone_id):
        weights = _weights(adapter, zone_id, svc)
        if not weights:
            untouched.append(svc.record)
            continue
        if weights.get("target") != 0 or weights.get("source") != 100:
            _set_all(adapter, zone_id, [svc], 0, ttl)
        restored.append({"record": svc.record, "before": weights,
                         "after": _weights(adapter, zone_id, svc)})
    progress(ctx, f"rollback: {len(restored)} services at 100% source")
    return PhaseResult(
        phase=PHASE, ok=True,
        summary=f"{len(restored)} services at 100% source; {len(untouched)} never shifted",
        details={"restored": restored, "never_shifted": untouched},
    )
