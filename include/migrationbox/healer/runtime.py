"""The healer's runtime: one sensing pass from readings to healed (or escalated) incidents.

:meth:`Healer.run_pass` is what the heal DAG's task calls (and what tests and the
benchmark call directly): sense (``sensing``), build the situations the decision matrix
knows about, find the root cause on the estate's dependency graph (``rca``), decide
(``decision`` with the SQL guard: one remediation per resource, a rate limit), execute
auto-heals (``remediation``: pre-check, action, verification, rollback), record the
outcome for learning (``learning``), write the incident (``store``) and notify.

What makes a *situation* (one per target and matrix row): the row's condition metric is
measured for the target and its condition holds **now** (the newest point), with
``sustained_seconds`` measured on the series (the matrix's ``for_seconds`` times
``SensingConfig.sustain_scale``). Its detection confidence is the detectors' verdict on
the points of the current spell (continuous metrics), or ``high`` for threshold facts
(certificate, connection pool, 5/5 failed health checks). A high-confidence anomaly on a
metric no row covers (request rate, latency, errors) becomes an alert-only situation; a
low-confidence anomaly is only reported in the pass report.

Faults do not crash a pass: a target whose endpoints do not answer is *unhealthy* (or
its metrics are missing and it is skipped, said in ``PassReport.notes``), a remediation
that fails half-way is rolled back and its incident says so, and an open incident of the
same resource and anomaly type (or a recent alert) is not duplicated.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd
from sqlalchemy.engine import Engine

from migrationbox import settings
from migrationbox.cloud.base import CloudAdapter
from migrationbox.healer import sensing
from migrationbox.healer.decision import (
    Decision,
    DecisionEngine,
    DecisionMatrix,
    MatrixRow,
    Observation,
    Outcome,
    Situation,
    load_matrix,
)
from migrationbox.healer.guard import SqlGuard
from migrationbox.healer.health import HealthResult, HealthStatus
from migrationbox.healer.incident import (
    Incident,
    IncidentStatus,
    Prevention,
    RemediationSummary,
    VerificationRecord,
    render_markdown,
)
from migrationbox.healer.learning import ActionPosteriors, SqlRemediationLog, record_outcome
from migrationbox.healer.remediation import RemediationContext, execute, remediation_for
from migrationbox.healer.store import IncidentStore, ProbeStore, failed_of_last
from migrationbox.healer.verification import RecoverySignal, SampledSignal, SeriesSignal

HEALTH_METRIC = "failed_health_checks_of_last_5"
TEAMS_CONN_ID = "migrationbox_healer_teams"

PREVENTION = {
    "horizontal_scale": ("Set auto-scaling on CPU for this service",
                         "Add a target-tracking scaling policy (CPU 70 %)"),
    "vertical_scale_restart": ("Find the memory growth before it recurs",
                               "Profile the service's heap; alarm at 85 % memory"),
    "disk_cleanup_expand": ("Rotate and ship logs", "Enable logrotate with 14-day retention"),
    "rolling_restart": ("Find why health checks failed", "Review the service's error logs"),
    "increase_max_connections_restart": ("Fix the connection leak",
                                         "Add pool timeouts and leak detection"),
    "renew_certificate_reload": ("Automate renewal", "Alarm 30 days before expiry"),
    "kill_blocking_query": ("Bound how long a transaction may hold locks",
                            "Set idle_in_transaction_session_timeout and lock_timeout"),
}


@dataclass(frozen=True)
class HealerSettings:
    sensing: sensing.SensingConfig = field(default_factory=sensing.SensingConfig)
    verify_timeout_s: float = 30.0
    verify_interval_s: float = 1.0
    dedupe_window: timedelta = timedelta(minutes=15)
    notify_conn_id: str = TEAMS_CONN_ID
    holder: str = "healer"


@dataclass
class SituationReport:
    server_id: str
    anomaly_type: str
    metric: str
    value: float | None
    detection: str
    resource: str
    rca_confidence: float | None
    outcome: str
    reasons: list[str]
    incident_id: str | None = None
    action: str | None = None
    remediation_success: bool | None = None
    rolled_back: bool = False
    detected_at: str | None = None
    decided_at: str | None = None
    resolved_at: str | None = None


@dataclass
class PassReport:
    estate: str
    started_at: str
    finished_at: str = ""
    targets: int = 0
    health: dict[str, str] = field(default_factory=dict)
    situations: list[SituationReport] = field(default_factory=list)
    low_anomalies: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    #: conditions that hold but not yet for as long as their matrix row asks (a burn at
    #: 92 % CPU for 40 s of 300): the next passes decide
    watching: list[str] = field(default_factory=list)
    timings_s: dict[str, float] = field(default_factory=dict)
    monitoring_calls: int = 0
    #: ``"<server>:<row>"`` -> the healed incident a condition is a recurrence of (its
    #: detection is taken as confirmed: see ``Healer._situations``)
    recurrences: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def quiet(self) -> bool:
        """Nothing to act on or to watch: no situation, no condition building up, every
        probe healthy (or without an endpoint). Low-confidence anomalies do not count:
        they only alert, and waiting for them to fade would keep a woken healer busy for
        nothing."""
        return not self.situations and not self.watching and all(
            h in (HealthStatus.healthy.value, HealthStatus.unknown.value)
            for h in self.health.values())

    def pending_approvals(self) -> list[str]:
        return [s.incident_id for s in self.situations
                if s.outcome == Outcome.needs_approval.value and s.incident_id]


def scaled_matrix(matrix: DecisionMatrix, scale: float) -> DecisionMatrix:
    if scale == 1.0:
        return matrix
    rows = [r.model_copy(update={"condition": r.condition.model_copy(update={
        "for_seconds": r.condition.for_seconds * scale})}) for r in matrix.rows]
    return matrix.model_copy(update={"rows": rows})


def notifiers_from_airflow(conn_id: str, *, in_task: bool = False) -> list[Any]:
    """The Teams webhook notifier when the connection exists (off by default).

    Inside an Airflow task (``in_task``: the heal DAGs) the connection is looked up through
    the Task SDK, wherever it was defined (UI, REST, secrets backend); elsewhere (CLI,
    benchmarks) only an ``AIRFLOW_CONN_*`` variable is read, since there is no task
    context to ask."""
    import os

    if not in_task and os.environ.get(f"AIRFLOW_CONN_{conn_id.upper()}") is None and \
            not settings.get("healer_notify_from_airflow"):
        return []
    try:
        from airflow.sdk import Connection

        conn = Connection.get(conn_id)
    except Exception:
        return []
    from migrationbox.healer.notify import TeamsWebhookNotifier

    url = conn.host if (conn.host or "").startswith("http") else (
        (conn.extra_dejson or {}).get("url") or conn.get_uri())
    return [TeamsWebhookNotifier(url=url)]


class Healer:
    """``adapter``: the cloud to sense and heal through; ``None`` uses, per estate, the
    adapter of its latest plan's cloud and region (and the default connection)."""

    def __init__(self, engine: Engine | None = None, settings: HealerSettings | None = None,
                 *, source: sensing.MetricSource | None = None,
                 notifiers: Sequence[Any] | None = None,
                 matrix: DecisionMatrix | None = None,
                 adapter: CloudAdapter | None = None) -> None:
        if engine is None:
            from migrationbox.store.db import engine as store_engine

            engine = store_engine()
        self.engine = engine
        self.settings = settings or HealerSettings()
        self.matrix = scaled_matrix(matrix or load_matrix(),
                                    self.settings.sensing.sustain_scale)
        for row in self.matrix.rows:  # a window that cannot fit is refused up front
            if row.verify.min_seconds >= self.settings.verify_timeout_s:
                raise ValueError(
                    f"matrix row {row.id!r}: verify.min_seconds {row.verify.min_seconds:g} "
                    f"does not fit in verify_timeout_s {self.settings.verify_timeout_s:g}")
        self.incidents = IncidentStore(engine)
        self.probes = ProbeStore(engine)
        self.log = SqlRemediationLog(engine)
        self.guard = SqlGuard(engine)
        self._source = source
        self._notifiers = notifiers
        self._adapter = adapter
        self._clouds: dict[str, CloudAdapter | None] = {}
        self.forecasters = sensing.ForecasterCache()

    @property
    def source(self) -> sensing.MetricSource:
        if self._source is None:
            self._source = sensing.MetricSource(self.settings.sensing.namespace,
                                                adapter=self._adapter)
        return self._source

    def cloud_for(self, estate: str) -> CloudAdapter | None:
        """The adapter remediations of ``estate`` act through (None: lab side only)."""
        if self._adapter is not None:
            return self._adapter
        if estate not in self._clouds:
            self._clouds[estate] = estate_adapter(estate)
        return self._clouds[estate]

    @property
    def notifiers(self) -> list[Any]:
        if self._notifiers is None:
            self._notifiers = notifiers_from_airflow(self.settings.notify_conn_id)
        return list(self._notifiers)

    def engine_for_decisions(self) -> DecisionEngine:
        posteriors = ActionPosteriors.from_records(self.matrix, self.log.records())
        return DecisionEngine(self.guard, matrix=self.matrix, confidence_source=posteriors,
                              holder=self.settings.holder)

    # ------------------------------------------------------------------ the pass
    def run_pass(self, estate: str, targets: Sequence[sensing.Target] | None = None
                 ) -> PassReport:
        cfg = self.settings.sensing
        t0 = time.perf_counter()
        now = datetime.now(UTC)
        report = PassReport(estate=estate, started_at=now.isoformat())
        targets = list(targets) if targets is not None else sensing.load_targets(estate)
        report.targets = len(targets)
        if not targets:
            report.notes.append("no completed wave: nothing to watch")
            report.finished_at = datetime.now(UTC).isoformat()
            return report

        health: dict[str, HealthResult] = {}
        for t in targets:
            last = self.probes.last(estate, t.server_id, 1)
            result = sensing.probe(t, at=now, previous=last[0] if last else None,
                                   timeout=cfg.probe_timeout_s)
            self.probes.add(estate, result)
            health[t.server_id] = result
            report.health[t.server_id] = result.status.value
        t1 = time.perf_counter()

        watched = [t for t in targets if t.service]
        keys = [(t.metric_id, m) for t in watched for m in sensing.READ]
        calls_before = self.source.calls
        try:
            data = self.source.series(keys, now - self._lookback(), now + timedelta(seconds=1),
                                      cfg.period_s)
        except Exception as exc:  # the monitoring API stopped answering: health only
            report.notes.append(f"monitoring API failed: {type(exc).__name__}: {exc}")
            data = {}
        report.monitoring_calls = self.source.calls - calls_before
        t2 = time.perf_counter()

        situations: list[tuple[sensing.Target, str, MatrixRow | None, Observation, str,
                               datetime | None]] = []
        for t in targets:
            situations.extend(self._situations(t, data, health, now, report))
        t3 = time.perf_counter()

        graph = self._graph(estate)
        # services with a matrix-known problem are the "affected" ones RCA reasons about;
        # a metric-only blip (a neighbour's latency wobble) is not evidence of a cause
        anomalous: dict[str, datetime] = {}
        for t, _type, row, _obs, _det, onset in situations:
            if row is not None:
                anomalous[t.server_id] = min(anomalous.get(t.server_id, onset or now),
                                             onset or now)
        decider = self.engine_for_decisions()
        by_id = {t.server_id: t for t in targets}
        for target, anomaly_type, row, obs, detection, onset in situations:
            report.situations.append(self._handle(
                decider, estate, target, anomaly_type, row, obs, detection, onset, graph,
                anomalous, health, by_id, now, report))
        t4 = time.perf_counter()
        report.timings_s = {"probe": round(t1 - t0, 3), "metrics": round(t2 - t1, 3),
                            "detect": round(t3 - t2, 3), "decide_and_heal": round(t4 - t3, 3),
                            "total": round(t4 - t0, 3)}
        report.finished_at = datetime.now(UTC).isoformat()
        return report

    def _judged_history(self) -> timedelta:
        """The history the detectors judge: the z-score window before the longest episode
        a row waits for, plus the recent margin; older points were judged by earlier
        passes (and each flagged point costs a Prophet predict)."""
        cfg = self.settings.sensing
        longest = max((r.condition.for_seconds for r in self.matrix.rows), default=0.0)
        return timedelta(seconds=longest + cfg.detector.zscore.window * cfg.period_s
                         ) + cfg.recent

    def _lookback(self) -> timedelta:
        """How much history a pass reads: what it judges plus 10 s (capped by
        ``lookback``). Reading no more matters on the emulator, whose ``GetMetricData``
        cost grows with the square of the window (each 1 s period scans every point)."""
        return min(self.settings.sensing.lookback,
                   self._judged_history() + timedelta(seconds=10))

    def _graph(self, estate: str) -> Any:
        from migrationbox.planning.graph import build_dependency_graph
        from migrationbox.store import repository
        from migrationbox.store.db import session_scope

        with session_scope(read_only=True) as s:
            record = repository.get_estate(s, estate)
        if record is None:
            raise LookupError(f"estate {estate!r} is not in the store")
        return build_dependency_graph(record.servers).graph

    def _situations(self, t: sensing.Target, data: dict[tuple[str, str], Any],
                    health: dict[str, HealthResult], now: datetime, report: PassReport
                    ) -> list[tuple[sensing.Target, str, MatrixRow | None, Observation, str,
                                    datetime | None]]:
        cfg = self.settings.sensing
        out: list[tuple[sensing.Target, str, MatrixRow | None, Observation, str,
                        datetime | None]] = []
        covered: set[str] = set()
        judgements: dict[str, sensing.MetricJudgement] = {}
        if t.service:
            missing = [m for m in sensing.READ if data.get((t.metric_id, m)) is None
                       or data[(t.metric_id, m)].empty]
            if data and missing:
                report.notes.append(f"{t.server_id}: no data for {', '.join(missing)}")
            keep = pd.Timestamp(now - self._judged_history())
            for m in sensing.CONTINUOUS:
                series = data.get((t.metric_id, m))
                if series is not None and not series.empty:
                    judgements[m] = sensing.judge(t, m, series[series.index >= keep], now=now,
                                                  config=cfg, forecasters=self.forecasters)
        for row in self.matrix.rows:
            metric = row.condition.metric
            holds = row.condition.holds

            if metric == HEALTH_METRIC:
                failed = failed_of_last(self.probes.last(t.estate, t.server_id, 5))
                if failed == 0:
                    continue
                if failed < 5:
                    report.watching.append(f"{t.server_id}: {failed}/5 recent health "
                                           "checks failed (flapping or starting)")
                    continue
                bad = health.get(t.server_id)
                out.append((t, row.id, row, Observation(metric, float(failed), 0.0), "high",
                            bad.unhealthy_since if bad else None))
                covered.add(metric)
                continue
            if metric in sensing.PROBE_FACTS:
                probed = health.get(t.server_id)
                fact = (probed.components.get("database") or {}) if probed else {}
                value = fact.get(metric)
                if value is None or not holds(float(value)):
                    continue
                covered.add(metric)
                waited = float(fact.get("longest_wait_s") or 0.0)
                if waited < row.condition.for_seconds:
                    report.watching.append(f"{t.server_id}: {row.condition.describe()} "
                                           f"has held {waited:.1f} s")
                    continue
                out.append((t, row.id, row, Observation(metric, float(value), waited),
                            "high", now - timedelta(seconds=waited)))
                continue
            series = data.get((t.metric_id, metric))
            if series is None or series.empty:
                continue
            sustained, since = sensing.sustained_seconds(series, holds, cfg.period_s)
            if sustained <= 0:
                continue
            latest = float(series.dropna().iloc[-1])
            covered.add(metric)
            if sustained < row.condition.for_seconds:
                report.watching.append(f"{t.server_id}: {row.condition.describe()} has "
                                       f"held {sustained:g} s")
                continue
            if metric in sensing.THRESHOLD_FACTS:
                detection = "high"
            else:
                j = judgements.get(metric)
                # the anomaly that starts an episode comes with its first points (the
                # z-score adapts afterwards), possibly before a dip restarted the spell:
                # any confirmed anomaly in the judged window (the longest rule + recent +
                # the z-score window) that deviates the way the condition does counts
                rising = row.condition.operator in (">", ">=")
                # ... as does a high-confidence incident of the incident detector
                spell = [a for a in ((j.anomalies + j.incidents) if j else [])
                         if a.high_confidence and ((a.z_score or 0) > 0) == rising]
                detection = "high" if spell else "low"
                if detection == "low":
                    # A condition healed moments ago that holds again: its earlier spell
                    # is still in the history the detectors judge (a level seen five minutes ago
                    # is not new to them), so they cannot confirm what they confirmed
                    # then. Same resource, same row, healed and verified: the same
                    # problem, confirmed; the rate limit bounds how often it is acted on.
                    healed = self.incidents.last_healed(
                        t.estate, t.server_id, row.id, since=now - self._judged_history())
                    if healed is not None:
                        detection = "high"
                        report.recurrences[f"{t.server_id}:{row.id}"] = healed.incident_id
            out.append((t, row.id, row, Observation(metric, latest, sustained), detection,
                        since))
        for m, j in judgements.items():
            if m in covered:
                continue
            best = j.best()
            if best is None:
                continue
            if best.high_confidence:
                out.append((t, f"{m}_{best.category.value}", None,
                            Observation(m, best.value, 0.0), "high",
                            best.timestamp.to_pydatetime()))
            else:
                report.low_anomalies.append({"server_id": t.server_id, "metric": m,
                                             **best.to_dict()})
        return out

    # ------------------------------------------------------------------ one situation
    def _handle(self, decider: DecisionEngine, estate: str, target: sensing.Target,
                anomaly_type: str, row: MatrixRow | None, obs: Observation, detection: str,
                onset: datetime | None, graph: Any, anomalous: dict[str, datetime],
                health: dict[str, HealthResult], by_id: dict[str, sensing.Target],
                now: datetime, report: PassReport) -> SituationReport:
        from migrationbox.healer.rca import analyse

        sid = target.server_id
        rep = SituationReport(server_id=sid, anomaly_type=anomaly_type, metric=obs.metric,
                              value=obs.value, detection=detection, resource=sid,
                              rca_confidence=None, outcome="", reasons=[],
                              detected_at=now.isoformat())
        existing = self.incidents.open_for(estate, sid, anomaly_type,
                                           within=self.settings.dedupe_window, now=now)
        if existing is not None:
            rep.outcome, rep.incident_id = "deduplicated", existing.incident_id
            rep.reasons.append(f"incident {existing.incident_id} ({existing.status.value}) "
                               "already covers it")
            return rep
        rca = None
        if sid in graph:
            rca = analyse(graph, sid, anomalous={**anomalous, sid: anomalous.get(
                sid, onset or now)}, health=health)
        top = rca.top if rca else None
        resource = top.resource if top else sid
        rep.resource, rep.rca_confidence = resource, (top.confidence if top else None)
        bad = health.get(sid)
        severity = "P1" if bad is not None and bad.status is HealthStatus.unhealthy and \
            anomaly_type == "health_check_failed" else ("P2" if row else "P3")
        situation = Situation(anomaly_type=anomaly_type, resource=resource,
                              detection_confidence=detection,
                              rca_confidence=top.confidence if top else None,
                              observation=obs, severity=severity,
                              root_cause="self" if resource == sid else "dependency", at=now)
        decision = decider.decide(situation)
        decided = datetime.now(UTC)
        rep.outcome, rep.reasons = decision.outcome.value, list(decision.reasons)
        rep.action, rep.decided_at = decision.action, decided.isoformat()

        def build(incident_id: str) -> Incident:
            title = (row.root_cause if row else f"{obs.metric} {anomaly_type}") + f" on {sid}"
            inc = Incident(
                incident_id=incident_id, title=title, resource=resource, severity=severity,
                status=IncidentStatus.open,
                summary=(f"{obs.metric} = {obs.value:g} on {sid} "
                         f"({detection}-confidence detection)."),
                onset_at=onset, detected_at=now, decided_at=decided,
                root_cause=(f"{top.resource}: " + "; ".join(top.evidence)) if top else
                "Not determined (server not in the dependency graph).",
                root_cause_confidence=top.confidence if top else None,
                root_cause_candidates=[f"{c.resource} ({c.confidence:.2f})"
                                       for c in (rca.causes if rca else [])])
            if onset:
                inc.add_event(onset, f"{obs.metric} condition began to hold")
            inc.add_event(now, f"detected: {obs.metric} = {obs.value:g}, {detection} "
                               "confidence" + (f", held {obs.sustained_seconds:g} s"
                                               if obs.sustained_seconds else ""))
            recurs = report.recurrences.get(f"{sid}:{anomaly_type}")
            if recurs:
                inc.add_event(now, f"confirmed as a recurrence of {recurs} (healed and "
                                   "verified moments ago): its spell is still in the "
                                   "detectors' baseline, so they cannot call this level new")
            if rca and rca.unknown:
                inc.add_event(now, "no health data for: " + ", ".join(rca.unknown))
            inc.add_event(decided, "decision: " + decision.summary())
            return inc

        incident = self.incidents.create(estate, anomaly_type, build, seen_on=sid)
        rep.incident_id = incident.incident_id
        if decision.outcome is Outcome.auto_heal:
            self._remediate(decider, decision, incident, by_id.get(resource, target), rep)
        elif decision.outcome is Outcome.needs_approval:
            incident.status = IncidentStatus.awaiting_approval
            incident.remediation = RemediationSummary(
                action=decision.action or "", description=row.action_description if row else "",
                decision="awaiting approval by a person")
        else:
            incident.status = IncidentStatus.alerted
            if decision.outcome is Outcome.suppressed:
                incident.add_event(decided, "remediation suppressed: " + decision.reasons[-1])
        self._finish_incident(incident)
        return rep

    def _remediate(self, decider: DecisionEngine, decision: Decision, incident: Incident,
                   target: sensing.Target, rep: SituationReport) -> None:
        assert decision.row is not None
        row = decision.row
        from migrationbox.healer.learning import new_remediation_id

        rid = new_remediation_id()
        params = dict(row.action_params)
        if target.database_url:  # database actions work on the migrated (target) database
            params.setdefault("database_url", target.database_url)
        ctx = RemediationContext(
            estate=target.estate, server_id=target.server_id, action=row.action,
            params=params, remediation_id=rid, service=target.service,
            control_url=target.control_url, dns_name=target.dns_name,
            cloud=self.cloud_for(target.estate),
            verify_timeout_s=self.settings.verify_timeout_s,
            verify_interval_s=self.settings.verify_interval_s,
            signal=self.recovery_signal(target, row), verify_window=row.verify)
        try:
            outcome = execute(remediation_for(row.action), ctx)
        finally:
            decider.finish(decision)
        for at, text in outcome.steps:
            incident.add_event(at, text)
        resolved = outcome.finished_at if outcome.success else None
        incident.resolved_at = resolved
        incident.status = IncidentStatus.resolved if outcome.success else IncidentStatus.failed
        incident.remediation = RemediationSummary(
            action=row.action, description=row.action_description,
            decision=(f"approved by {decision.approved_by}" if decision.approved_by else
                      f"auto-heal (confidence {decision.confidence:.2f})"),
            success=outcome.success, rolled_back=outcome.rolled_back,
            rollback_reason=outcome.rollback_reason or outcome.refused,
            approved_by=decision.approved_by, side_effects=outcome.side_effects,
            verification=VerificationRecord.of(outcome.verification, row.verify)
            if outcome.verification is not None else None)
        rec, why = PREVENTION.get(row.action, ("Review the runbook", "Add an alarm"))
        incident.prevention = Prevention(recommendation=rec, action_item=why)
        rep.remediation_success, rep.rolled_back = outcome.success, outcome.rolled_back
        rep.resolved_at = resolved.isoformat() if resolved else None
        if outcome.refused:  # nothing was done: not an outcome the action can learn from
            return
        posteriors = ActionPosteriors.from_records(self.matrix, self.log.records())
        record_outcome(self.log, posteriors, anomaly_type=row.id, action=row.action,
                       success=outcome.success, timestamp=outcome.finished_at,
                       time_to_recovery_seconds=(resolved - incident.detected_at
                                                 ).total_seconds() if resolved else None,
                       side_effects=outcome.side_effects, resource=target.server_id,
                       severity=incident.severity,
                       root_cause="self" if decision.situation.root_cause == "self"
                       else "dependency", remediation_id=rid,
                       notes=outcome.error)

    def recovery_signal(self, target: sensing.Target, row: MatrixRow) -> RecoverySignal:
        """What verification watches for ``row`` on ``target``: the row's metric read back
        from the monitoring API (points published after the action took effect), or, for
        facts the probe measures and for health, probes the healer takes itself (each one
        a point of the window)."""
        metric = row.condition.metric
        cond = row.condition.describe().split(" for ")[0]

        if metric in sensing.PROBE_FACTS:
            def sample_fact() -> tuple[float | None, str]:
                r = sensing.probe(target, at=datetime.now(UTC), previous=None,
                                  integrity_max_age_s=0)
                value = (r.components.get("database") or {}).get(metric)
                if value is None:
                    return None, f"{metric} not measured: {r.detail}"
                return float(value), f"{metric} = {float(value):g}"
            return SampledSignal(sample_fact, row.condition.holds, cond)

        if metric == HEALTH_METRIC or not target.service:
            def sample_health() -> tuple[float | None, str]:
                r = sensing.probe(target, at=datetime.now(UTC), previous=None)
                healthy = r.status is HealthStatus.healthy
                return (0.0 if healthy else 1.0), f"health {r.status.value} {r.detail}"
            # 0 failed probes is the healthy value here: never a reset reading
            return SampledSignal(sample_health, lambda v: v > 0, "unhealthy")

        key = (target.metric_id, metric)

        def fetch(start: datetime, end: datetime) -> list[tuple[datetime, float]]:
            s = self.source.series([key], start, end, self.settings.sensing.period_s)[key]
            return [(ts.to_pydatetime(), float(v)) for ts, v in s.items()]
        return SeriesSignal(fetch, row.condition.holds, cond)

    def _finish_incident(self, incident: Incident) -> None:
        report = render_markdown(incident)
        self.incidents.save(incident, report)
        for n in self.notifiers:
            try:
                n.notify(incident, report)
            except Exception as exc:  # a notifier that fails must not fail the pass
                incident.add_event(datetime.now(UTC), f"notification failed: {exc}")
                self.incidents.save(incident, render_markdown(incident))

    # ------------------------------------------------------------------ approvals
    def execute_approved(self, incident_id: str, approver: str,
                         targets: Sequence[sensing.Target] | None = None) -> Incident:
        """Run the remediation of an incident awaiting approval, now that a person said
        yes (the approval DAG's last task). Idempotent: other statuses are returned as is."""
        incident, waiting = self._awaiting(incident_id)
        if not waiting:
            return incident
        anomaly_type = self.incidents.anomaly_type(incident_id)
        row = self.matrix.row(anomaly_type)
        if row is None:
            raise ValueError(f"incident {incident_id}: no matrix row {anomaly_type!r}")
        estate = self.incidents.estate(incident_id)
        targets = list(targets) if targets is not None else sensing.load_targets(estate)
        target = next((t for t in targets if t.server_id == incident.resource), None) or \
            sensing.Target(estate=estate, server_id=incident.resource, wave=0)
        decider = self.engine_for_decisions()
        pending = Decision(Outcome.needs_approval, Situation(
            anomaly_type=row.id, resource=incident.resource, detection_confidence="high",
            rca_confidence=incident.root_cause_confidence, severity=incident.severity),
            row, row.confidence, "matrix", ("approval requested",))
        decision = decider.approve(pending, approver)
        incident.add_event(datetime.now(UTC), f"approved by {approver}")
        rep = SituationReport(target.server_id, row.id, row.condition.metric, None, "high",
                              incident.resource, incident.root_cause_confidence, "", [])
        if decision.outcome is Outcome.auto_heal:
            self._remediate(decider, decision, incident, target, rep)
        else:
            incident.status = IncidentStatus.alerted
            incident.add_event(datetime.now(UTC), "not executed: " + decision.reasons[-1])
        self._finish_incident(incident)
        return incident

    def _awaiting(self, incident_id: str) -> tuple[Incident, bool]:
        found = self.incidents.get(incident_id)
        if found is None:
            raise KeyError(f"no incident {incident_id!r}")
        incident, _ = found
        return incident, incident.status is IncidentStatus.awaiting_approval

    def reject(self, incident_id: str, who: str, why: str = "rejected") -> Incident:
        """A person said no (or nobody answered in time): the incident stays with people,
        no action runs. Idempotent like :meth:`execute_approved`."""
        incident, waiting = self._awaiting(incident_id)
        if not waiting:
            return incident
        incident.status = IncidentStatus.alerted
        incident.add_event(datetime.now(UTC), f"remediation not approved: {why} ({who}); "
                                              "left to people")
        if incident.remediation is not None:
            incident.remediation.decision = f"not approved: {why} ({who})"
        self._finish_incident(incident)
        return incident


def estate_adapter(estate: str) -> CloudAdapter | None:
    """The adapter of the estate's latest plan (its cloud and region, the cloud's default
    connection); None when there is no plan or no adapter can be built for it."""
    from migrationbox.cloud import get_adapter
    from migrationbox.store import repository
    from migrationbox.store.db import session_scope

    try:
        with session_scope(read_only=True) as s:
            plan = repository.get_plan(s, estate)
        if plan is None:
            return get_adapter()
        return get_adapter(plan.settings.cloud, None, plan.settings.region)
    except Exception:  # no store, no connection: the lab side still heals
        return None
