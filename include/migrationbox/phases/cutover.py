"""Phase 6, cutover: move traffic to the target in weighted-DNS steps, with a way back.

Each web/api/load-balancer server of the wave (its ``http`` endpoints) has a service name
``<short>.<estate>.migrationbox.internal`` in the estate's zone. Cutover replaces the
plain record provisioning made with two weighted records, ``source`` and ``target``, and
hands them to the canary controller (``migrationbox.cutover``): 5 → 25 → 50 → 100 % by
default, probes of the real target services published to CloudWatch and read back, the
plan's rollback triggers evaluated after every probe batch, 100 % source at once on a
trigger, on a DNS record changed by hand, or when the monitoring API stops answering.
The reason, the metrics and how long the way back took are in ``cutover.json``.

Before the first step, each database of the wave gets its final delta (one watermark
round and the checksum comparison; the lag it closed is reported), so the target
services read current data once traffic reaches them.

Servers the plan marks live (``ServerPlan.live``) are frozen just before the first step:
their last changed blocks are copied (pre-copy with changed-block tracking,
``phases.live``), configure runs again if it had run, and the downtime from the freeze
until the target serves is measured per server (``details.live.servers.<id>.downtime_s``).
A failed live step or a rolled-back canary resumes the frozen sources.

Idempotent: the current weights are read first; steps at or below them are not
repeated, and a wave already at 100 % target is only re-probed. ``rollback(ctx)`` puts
100 % of traffic back on the source wherever weighted records exist — except that once
the wave completed its cutover (100 % target), going back needs an approval: ``rollback``
then fails with what to do, and ``rollback_approved(ctx)`` (the task after the approval
gate) does it.

Options: the run conf's ``cutover`` section (``phases.options.CutoverOptions``: steps,
dwell, probe interval, TTL, final sync and the rollback rules) and ``health`` (probe
requests and timeout). Every cloud call goes through the cloud adapter; the
``monitoring`` collaborator, when given, is the adapter used for the canary's metrics.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from ipaddress import ip_address
from typing import Any
from urllib.parse import urlparse

from migrationbox.cloud.base import CloudAdapter
from migrationbox.cutover.controller import CanaryController, CanarySettings
from migrationbox.cutover.metrics import NAMESPACE, CanaryMetrics, MetricsUnavailable
from migrationbox.cutover.rules import RollbackRules
from migrationbox.endpoints import Endpoint, by_server
from migrationbox.iac.design import dns_zone
from migrationbox.iac.design import record_name as target_dns_name
from migrationbox.phases._cloud import adapter_for, progress, write_json
from migrationbox.phases.context import PhaseContext, PhaseFailed, PhaseResult
from migrationbox.phases.live import live_cutover, live_servers
from migrationbox.phases.options import DEFAULT_CUTOVER_STEPS, PhaseOptions
from migrationbox.phases.replicate import endpoints_or_fail
from migrationbox.phases.smoke_test import find_zone_id
from migrationbox.replication.database import final_delta

PHASE = "cutover"
DEFAULT_STEPS = DEFAULT_CUTOVER_STEPS
STATE_FILE = "cutover.json"


@dataclass
class Service:
    server_id: str
    record: str
    endpoint: Endpoint
    source_value: str
    target_value: str

    @property
    def source_url(self) -> str:
        return (self.endpoint.source_uri or "").rstrip("/")

    @property
    def target_url(self) -> str:
        return (self.endpoint.target_uri or "").rstrip("/")


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
    def from_options(cls, options: PhaseOptions) -> Settings:
        """The canary's settings from the run conf (steps are validated by the model)."""
        cut = options.cutover
        return cls(
            steps=list(cut.steps),
            dwell=cut.dwell_seconds,
            requests=options.health.probe_requests,
            max_error_rate=cut.error_rate_points / 100,
            latency_factor=cut.latency_factor,
            latency_floor_ms=cut.latency_floor_ms,
            timeout=options.health.timeout_seconds,
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


def _weights(adapter: Any, zone_id: str, svc: Service) -> dict[str, int]:
    return {w.set_identifier: w.weight for w in adapter.get_weighted_records(zone_id, svc.record)}


def _set_all(adapter: Any, zone_id: str, svcs: list[Service], pct: int, ttl: int) -> None:
    for svc in svcs:
        adapter.upsert_weighted_records(zone_id, svc.record, svc.source_value, svc.target_value,
                                        pct, ttl=ttl)


def _final_sync(ctx: PhaseContext, endpoints: list[Endpoint]) -> dict[str, Any]:
    """The final database delta before traffic moves (see module docstring)."""
    out: dict[str, Any] = {}
    for s in ctx.servers:
        for ep in by_server(endpoints, s.server_id, "database"):
            if not ep.source_uri or not ep.target_uri:
                continue
            try:
                db = final_delta(ep.source_uri, ep.target_uri)
            except Exception as exc:  # the driver's errors: unreachable, auth, schema
                raise PhaseFailed(PHASE, f"{ep.label()}: final database sync failed before "
                                         f"any traffic moved ({type(exc).__name__}: {exc})"
                                  ) from exc
            lag = db.lag_before or {}
            out[ep.label()] = {"rows": db.rows_copied, "match": db.match,
                               "rows_pending_before": lag.get("rows_pending"),
                               "lag_s_before": lag.get("lag_s")}
            if not db.match:
                bad = [t.table for t in db.tables if not t.match]
                raise PhaseFailed(PHASE, f"{ep.label()}: tables {bad} differ after the final "
                                         "sync; no traffic was moved. Re-run replicate", out)
            never = lag.get("never_replicated")
            progress(ctx, f"cutover: final sync of {ep.label()}: {db.rows_copied} rows ("
                          + (f"tables {never} had never been replicated" if never else
                             f"lag before {lag.get('lag_s', 0):.0f}s") + ")", out[ep.label()])
    return out


def _monitoring(ctx: PhaseContext, adapter: CloudAdapter) -> CloudAdapter:
    """The adapter the canary publishes and reads its metrics through (the run's, unless
    the ``monitoring`` collaborator says otherwise)."""
    return ctx.collaborators.monitoring or adapter


def run(ctx: PhaseContext) -> PhaseResult:
    settings = Settings.from_options(ctx.options)
    rules = RollbackRules.from_options(ctx.options.cutover)
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
    zone_id = find_zone_id(ctx, adapter)
    if zone_id is None:
        raise PhaseFailed(PHASE, f"hosted zone {dns_zone(ctx.estate)} does not exist: run "
                                 "provision (not as a dry run) before cutover")
    svcs = services(ctx, endpoints, adapter, zone_id)
    ttl = ctx.options.cutover.ttl_seconds
    start_weights = {s.record: _weights(adapter, zone_id, s) for s in svcs}
    current = min(w.get("target", 0) for w in start_weights.values())
    steps = [w for w in settings.steps if w > current]
    final_sync = (_final_sync(ctx, endpoints)
                  if steps and ctx.options.cutover.final_sync else {})
    controller = CanaryController(
        adapter=adapter, zone_id=zone_id, services=svcs,
        settings=CanarySettings(
            steps=settings.steps, dwell_s=settings.dwell, requests=settings.requests,
            health_checks=(ctx.options.cutover.health_checks_per_batch
                           or max(1, settings.requests // 2)),
            timeout_s=settings.timeout,
            probe_interval_s=ctx.options.cutover.probe_interval_seconds,
            ttl=ttl),
        rules=rules, metrics=CanaryMetrics(_monitoring(ctx, adapter), ctx.estate, ctx.run_id),
        say=lambda m, d: progress(ctx, m, d),
    )
    report: dict[str, Any] = {
        "zone_id": zone_id, "services": [
            {"server_id": s.server_id, "record": s.record, "source": s.source_value,
             "target": s.target_value} for s in svcs],
        "start_weights": start_weights, "settings": asdict(settings),
        "rules": rules.as_dict(), "final_sync": final_sync, "metrics_namespace": NAMESPACE,
    }
    try:
        baseline = controller.baseline()
    except MetricsUnavailable as exc:
        report |= {"ok": False, "reason": str(exc), "rolled_back": False, "steps": []}
        write_json(ctx.run_artifacts() / STATE_FILE, report)
        raise PhaseFailed(PHASE, f"cannot read the baseline from the monitoring API ({exc}); "
                                 "no traffic was moved: check the monitoring endpoint and run "
                                 "cutover again", report) from exc
    live = None
    if steps and live_servers(ctx.servers):
        from migrationbox.phases import configure

        try:
            live = live_cutover(ctx, endpoints, PHASE, lambda: configure.run(ctx),
                                lambda m, d: progress(ctx, m, d))
        except PhaseFailed as exc:
            report |= {"ok": False, "reason": str(exc), "rolled_back": False, "steps": []}
            write_json(ctx.run_artifacts() / STATE_FILE, report)
            reason = str(exc).removeprefix(f"{PHASE}: ")
            raise PhaseFailed(PHASE, f"live cutover: {reason}; the frozen sources run again "
                                     "and no traffic was moved", report) from exc
        report["live"] = {"servers": live.servers}
    try:
        outcome = controller.run(steps, start_weights, baseline)
    except BaseException:
        if live is not None:  # the canary broke off: the sources must not stay frozen
            live.thaw_all()
        raise
    report |= {
        "baseline": outcome.baseline,
        "baseline_p95_ms": {r: w["p95_ms"] for r, w in outcome.baseline.items()},
        "steps": outcome.steps, "final_weights": outcome.final_weights,
    }
    if not outcome.ok:
        if live is not None:  # traffic is back on the source: it must take writes again
            live.thaw_all()
            report["live"] = {"servers": live.servers}
        report |= {"ok": False, "failed_at": outcome.failed_at, "reason": outcome.reason,
                   "trigger": outcome.trigger, "rolled_back": True,
                   "rollback_seconds": outcome.rollback_seconds,
                   "dns_changed_by_hand": outcome.dns_changed_by_hand}
        write_json(ctx.run_artifacts() / STATE_FILE, report)
        progress(ctx, f"cutover failed at {outcome.failed_at}%: {outcome.reason}; traffic is "
                      f"back on the source ({outcome.rollback_seconds:.2f}s after the trigger)",
                 {"weight": 0, "reason": outcome.reason, "trigger": outcome.trigger,
                  "rollback_seconds": outcome.rollback_seconds})
        raise PhaseFailed(
            PHASE, f"health check failed at {outcome.failed_at}% ({outcome.reason}); 100% of "
                   "traffic restored to the source", report)
    report |= {"ok": True}
    write_json(ctx.run_artifacts() / STATE_FILE, report)
    summary = (f"{len(svcs)} services at 100% target after steps {steps}" if steps
               else f"{len(svcs)} services already at 100% target; re-probed healthy")
    if live is not None:
        summary += "; live downtime " + ", ".join(
            f"{sid} {info['downtime_s']}s" for sid, info in live.servers.items())
    return PhaseResult(phase=PHASE, ok=True, summary=summary, details=report)


def rollback_requires_approval(ctx: PhaseContext) -> tuple[bool, str]:
    """True when the wave's traffic is fully on the target after a completed cutover:
    going back then is a new decision (the target may hold writes the source lacks)."""
    if ctx.dry_run:
        return False, "dry run"
    endpoints = endpoints_or_fail(ctx, PHASE)
    if not any(by_server(endpoints, s.server_id, "http") for s in ctx.servers):
        return False, "no HTTP services"
    adapter = adapter_for(ctx, PHASE)
    zone_id = find_zone_id(ctx, adapter)
    if zone_id is None:
        return False, "no hosted zone"
    svcs = services(ctx, endpoints, adapter, zone_id)
    weights = [_weights(adapter, zone_id, s) for s in svcs]
    if weights and all(w.get("target") == 100 for w in weights):
        return True, (f"{len(svcs)} services are at 100% target: rolling back after a "
                      "completed cutover needs an approval (gate 'rollback')")
    return False, "traffic is not fully on the target"


def rollback_approved(ctx: PhaseContext) -> PhaseResult:
    """The rollback after its approval gate passed (see ``rollback``)."""
    return rollback(ctx, approved=True)


def rollback(ctx: PhaseContext, approved: bool = False) -> PhaseResult:
    """100 % of traffic to the source wherever this wave has weighted records.

    ``approved``: the approval gate for rolling back a completed cutover passed.
    """
    if ctx.dry_run:
        return PhaseResult(phase=PHASE, ok=True, summary="dry run: nothing to roll back")
    endpoints = endpoints_or_fail(ctx, PHASE)
    if not any(by_server(endpoints, s.server_id, "http") for s in ctx.servers):
        return PhaseResult(phase=PHASE, ok=True, summary="no HTTP services: nothing to restore")
    if not approved:
        needed, why = rollback_requires_approval(ctx)
        if needed:
            raise PhaseFailed(PHASE, f"{why}; traffic stays on the target until someone "
                                     "approves the rollback")
    adapter = adapter_for(ctx, PHASE)
    zone_id = find_zone_id(ctx, adapter)
    if zone_id is None:
        return PhaseResult(phase=PHASE, ok=True,
                           summary="no hosted zone: traffic was never moved")
    restored, untouched = [], []
    ttl = ctx.options.cutover.ttl_seconds
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
        details={"restored": restored, "never_shifted": untouched,
                 "approved": approved},
    )
