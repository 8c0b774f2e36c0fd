"""Sensing: what the healer reads about migrated resources, and the detectors over it.

For an estate, the *targets* are the servers of every **completed** wave of its latest
plan (``repository.wave_statuses`` + the plan), with the endpoints the store holds for
them. One sensing pass:

1. **health** — probes each target's ``/health/live``, ``/health/ready`` and
   ``/health/deep`` (HTTP services), ``SELECT 1`` on its target database, or the existence
   of its target disk; the result is combined with the previous probe (kept in
   ``healer_health_probes``) so that a bad spell keeps its onset;
2. **metrics** — reads the cloud's monitoring API through the cloud adapter
   (``metric_series``: on AWS one CloudWatch ``GetMetricData`` call for all series of
   the pass) over ``lookback`` at ``period_s`` resolution: the values
   the lab's services measure and publish (``migrationbox.lab.metrics``);
3. **detection** — per continuous metric, model 1 (rolling z-score) over the series; when
   it flags something in the recent window, model 2 confirms with the metric's trained
   Prophet forecaster from MLflow (``tracking.load_latest_forecaster``, trained by the
   retraining DAG / :func:`train_forecasters`). Both are causal replays: the judgement of
   a point uses only earlier points. A metric without a trained forecaster gets model 1
   only, hence only low-confidence anomalies: the healer then alerts, never acts.

Threshold facts (certificate days left, connection-pool saturation, failed health checks
out of the last five) are not statistical: when their matrix condition holds the
evidence is the measurement itself, and they count as high-confidence detections.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pandas as pd

from migrationbox import settings
from migrationbox.cloud.base import CloudAdapter
from migrationbox.healer.detect import (
    Anomaly,
    Detector,
    DetectorConfig,
    ForecastConfig,
    Forecaster,
    IncidentConfig,
    IncidentDetector,
    ZScoreConfig,
    live_incident_config,
    zscore_scores,
)
from migrationbox.healer.health import HealthResult, HealthStatus, health_from_probes

NAMESPACE = "MigrationBox/Lab"
#: metrics judged by the two detectors
CONTINUOUS = ("cpu_utilization_pct", "memory_utilization_pct", "disk_used_pct", "latency_ms",
              "request_rate", "error_rate")
#: metrics whose matrix condition is a fact, not a statistical anomaly
THRESHOLD_FACTS = ("certificate_days_remaining", "db_connections_used_ratio",
                   "external_api_p95_latency_s")
READ = CONTINUOUS + THRESHOLD_FACTS
#: facts the health probe measures itself (not published metrics): ``health.components
#: ["database"]`` of a PostgreSQL target carries them, with how long the condition held
PROBE_FACTS = ("db_blocked_sessions", "data_checksum_mismatches")
#: how often (seconds) the integrity check of a database target (rows against its latest
#: backup, :mod:`migrationbox.healer.backup`) runs, unless
#: ``MIGRATIONBOX_HEAL_INTEGRITY_EVERY_S`` says otherwise; between two checks a probe reuses
#: the last finding. The check reads every table, so it is not run on every 10 s pass.
INTEGRITY_EVERY_S = 60.0
_integrity: dict[str, tuple[float, dict[str, Any]]] = {}
#: a session waiting this long on another session's lock makes the database "degraded"
LOCK_WAIT_DEGRADED_S = 5.0
#: sessions of the target database waiting on a lock another session holds, and the
#: longest such wait. A true deadlock is broken by PostgreSQL itself within
#: ``deadlock_timeout``; what stays is a lock chain behind a session that never finishes
#: (idle in transaction, a runaway batch): the case the matrix's "kill blocking query" is for.
_BLOCKED_SQL = (
    "SELECT count(*), coalesce(max(extract(epoch FROM clock_timestamp() - query_start)), 0) "
    "FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() "
    "AND wait_event_type = 'Lock' AND cardinality(pg_blocking_pids(pid)) > 0")


def lab_detector_config() -> DetectorConfig:
    """Detector settings for second-resolution lab series.

    One-minute z-score window (10 points to start), a sensible noise floor for
    percentages, and a forecaster needing only 20 s of history (it is trained on the
    baseline by :func:`train_forecasters`, not per chunk). A residual quantile estimated
    from a short baseline is coarse (the 97.5 % point of 30 samples sits between its top
    two), so the interval gets a 25 % margin (``interval_scale`` 1.25).
    """
    return DetectorConfig(
        zscore=ZScoreConfig(window=60, min_history=10, threshold=3.0),
        forecast=ForecastConfig(retrain_every=timedelta(days=1),
                                min_train_history=timedelta(seconds=20),
                                train_window=timedelta(hours=1), growth="flat",
                                interval_scale=1.25,
                                level_window=0, daily_fourier_order=4),
        lazy_forecast=True)


@dataclass(frozen=True)
class SensingConfig:
    namespace: str = NAMESPACE
    lookback: timedelta = timedelta(minutes=10)  # >= the longest matrix for_seconds
    period_s: int = 1
    detector: DetectorConfig = field(default_factory=lab_detector_config)
    #: for metrics no matrix row covers, anomalies older than this are history, not news
    #: (a matrix row instead looks at every anomaly of the condition's current spell)
    recent: timedelta = timedelta(seconds=30)
    probe_timeout_s: float = 2.0
    #: multiplies the matrix's ``for_seconds`` (1.0 in production; the chaos tests use a
    #: small factor so "90 % for 5 min" becomes "90 % for a few seconds")
    sustain_scale: float = 1.0
    use_forecasters: bool = True
    #: the NAB-measured incident detector (``detect --incidents``, docs/detector.md), set
    #: for one-second lab series; ``None`` judges with the two-model detector alone
    incident: IncidentConfig | None = field(default_factory=live_incident_config)


@dataclass(frozen=True)
class Target:
    """One migrated server the healer watches."""

    estate: str
    server_id: str
    wave: int
    service: str | None = None  # monitoring dimension (lab service name)
    http_url: str | None = None
    control_url: str | None = None
    database_url: str | None = None
    disk_path: str | None = None
    dns_name: str | None = None

    @property
    def metric_id(self) -> str:
        return self.service or self.server_id


def load_targets(estate: str) -> list[Target]:
    """Servers of the completed waves of the estate's latest plan, with their endpoints."""
    from migrationbox.store import repository
    from migrationbox.store.db import session_scope

    with session_scope(read_only=True) as s:
        plan = repository.get_plan(s, estate)
        if plan is None:
            return []
        statuses = repository.wave_statuses(s, estate, plan.version)
        eps = repository.endpoints(s, estate)
    done = {w.number: w for w in plan.waves if statuses.get(w.number) == "completed"}
    out: list[Target] = []
    for number, wave in sorted(done.items()):
        for sid in sorted(wave.server_ids):
            mine = [e for e in eps if e.server_id == sid]
            http = next((e for e in mine if e.kind == "http"), None)
            db = next((e for e in mine if e.kind == "database"), None)
            disk = next((e for e in mine if e.kind == "disk"), None)
            details = (http or disk or db).details if (http or disk or db) else {}
            out.append(Target(
                estate=estate, server_id=sid, wave=number,
                service=(http.details or {}).get("target_service") if http else None,
                http_url=http.target_uri if http else None,
                control_url=(http.details or {}).get("control_url") if http else None,
                database_url=db.target_uri if db else None,
                disk_path=disk.target_uri if disk else None,
                dns_name=(details or {}).get("dns_name")))
    return out


# --------------------------------------------------------------------------- health


def probe_http(base: str, timeout: float) -> tuple[int | None, int | None, Any]:
    def get(path: str) -> httpx.Response | None:
        try:
            return httpx.get(base.rstrip("/") + path, timeout=timeout)
        except httpx.HTTPError:
            return None

    live, ready, deep = get("/health/live"), get("/health/ready"), get("/health/deep")
    body = None
    if deep is not None:
        try:
            body = deep.json()
        except ValueError:
            body = None
    return (live.status_code if live is not None else None,
            ready.status_code if ready is not None else None, body)


def integrity_facts(target: Target, max_age_s: float | None = None) -> dict[str, Any]:
    """``data_checksum_mismatches`` of a database target against its latest backup (none
    without a backup), at most ``max_age_s`` old (default ``INTEGRITY_EVERY_S``)."""
    from migrationbox.healer import backup

    if not target.database_url:
        return {}
    age = float(settings.get("heal_integrity_every_s")) \
        if max_age_s is None else max_age_s
    cached = _integrity.get(target.database_url)
    if cached is not None and time.monotonic() - cached[0] < age:
        return cached[1]
    facts: dict[str, Any] = {}
    try:
        latest = backup.latest_backup(target.estate, target.server_id)
        if latest is not None:
            found = backup.corrupted_rows(target.database_url, latest)
            facts = {"data_checksum_mismatches": backup.count(found),
                     "corrupt_rows": backup.describe(found), "backup": latest.path.name}
    except Exception as exc:  # the check failing says nothing about the data: no fact
        facts = {"integrity_error": f"{type(exc).__name__}: {exc}"[:300]}
    _integrity[target.database_url] = (time.monotonic(), facts)
    return facts


def probe(target: Target, *, at: datetime, previous: HealthResult | None,
          timeout: float = 2.0, integrity_max_age_s: float | None = None) -> HealthResult:
    """One health observation of a target, whatever kind of endpoint it has."""
    if target.http_url:
        live, ready, body = probe_http(target.http_url, timeout)
        return health_from_probes(target.server_id, observed_at=at, live_status=live,
                                  ready_status=ready, deep_body=body, previous=previous)
    if target.database_url:
        from sqlalchemy import create_engine, text

        engine = create_engine(target.database_url, connect_args=_connect_timeout(
            target.database_url, timeout))
        facts: dict[str, Any] = {}
        try:
            with engine.connect() as conn:
                conn.execute(text("SELECT 1"))
                if target.database_url.startswith("postgresql"):
                    n, waited = conn.execute(text(_BLOCKED_SQL)).one()
                    facts = {"db_blocked_sessions": int(n), "longest_wait_s": float(waited)}
            facts |= integrity_facts(target, integrity_max_age_s)
            status, detail = HealthStatus.healthy, "SELECT 1 answered"
            if facts.get("db_blocked_sessions") and facts["longest_wait_s"] >= \
                    LOCK_WAIT_DEGRADED_S:
                status = HealthStatus.degraded
                detail += (f"; {facts['db_blocked_sessions']} session(s) blocked by another "
                           f"session's locks, longest {facts['longest_wait_s']:.0f} s")
            if facts.get("data_checksum_mismatches"):
                status = HealthStatus.degraded
                detail += (f"; {facts['data_checksum_mismatches']} row(s) differ from backup "
                           f"{facts['backup']} without a write explaining it")
        except Exception as exc:
            status, detail = HealthStatus.unhealthy, f"SELECT 1 failed: {type(exc).__name__}"
        finally:
            engine.dispose()
        result = _simple(target.server_id, status, detail, at, previous)
        if facts:
            result.components["database"] = facts
        return result
    if target.disk_path:
        from migrationbox.lab.endpoints import file_uri_path

        ok = file_uri_path(target.disk_path).is_dir()
        return _simple(target.server_id, HealthStatus.healthy if ok else HealthStatus.unhealthy,
                       "target volume present" if ok else "target volume missing", at, previous)
    return HealthResult(target.server_id, HealthStatus.unknown, at, detail="no endpoint")


def _connect_timeout(url: str, timeout: float) -> dict[str, Any]:
    return {"connect_timeout": max(1, int(timeout))} if url.startswith("postgresql") else {}


def _simple(resource: str, status: HealthStatus, detail: str, at: datetime,
            previous: HealthResult | None) -> HealthResult:
    since = None
    if status is not HealthStatus.healthy:
        since = previous.unhealthy_since if previous is not None and previous.is_bad and \
            previous.unhealthy_since else at
    return HealthResult(resource, status, at, since, detail=detail)


# --------------------------------------------------------------------------- metrics


class MetricSource:
    """Reads series from the cloud's monitoring API through the cloud adapter (the
    default adapter of the ``aws_default``-style connection unless given one). On AWS
    ``GetMetricData`` takes up to 500 queries: one call per pass; ``calls`` counts them.

    Reads are incremental (``incremental``, the default): the source keeps what it read,
    and a later read of series it already holds asks only for the points after the newest
    one it has, less ``overlap`` (points published late, a period still filling). A
    healer sensing every few seconds over a 100 s lookback then reads ~25 s per pass
    instead of 100 s. That matters most on the lab's emulator, whose ``GetMetricData``
    cost grows with the *square* of the window (every period scans every point of the
    window): a full read took 10 s on a busy machine, a tail read a fraction of that. On
    CloudWatch it cuts the datapoints returned (and paginated) by the same factor.
    """

    def __init__(self, namespace: str = NAMESPACE, adapter: CloudAdapter | None = None, *,
                 incremental: bool = True,
                 overlap: timedelta = timedelta(seconds=15)) -> None:
        self.namespace = namespace
        if adapter is None:
            from migrationbox.cloud import get_adapter

            adapter = get_adapter()
        self.adapter = adapter
        self.calls = 0
        self.incremental = incremental
        self.overlap = overlap
        #: per (dimension, metric, period_s): the points held, and from when they are
        #: complete (the start of the first read that covered them)
        self._held: dict[tuple[str, str, int], tuple[datetime, pd.Series]] = {}
        self._span: dict[tuple[str, str], timedelta] = {}

    def _fetch(self, keys: list[tuple[str, str]], start: datetime, end: datetime,
               period_s: int) -> dict[tuple[str, str], pd.Series]:
        from migrationbox.cloud.base import MetricQuery

        queries = [MetricQuery(id=f"q{i}", namespace=self.namespace, metric=metric,
                               dimensions={"Service": dim}, period_s=period_s, stat="Average")
                   for i, (dim, metric) in enumerate(keys)]
        before = self.adapter.monitoring_calls
        try:
            found = self.adapter.metric_series(queries, start, end) if queries else {}
        finally:
            self.calls += self.adapter.monitoring_calls - before
        out: dict[tuple[str, str], pd.Series] = {}
        for q, key in zip(queries, keys, strict=True):
            out[key] = _points_series(found.get(q.id, []))
        return out

    def series(self, keys: Iterable[tuple[str, str]], start: datetime, end: datetime,
               period_s: int = 1) -> dict[tuple[str, str], pd.Series]:
        keys = list(dict.fromkeys(keys))
        if not self.incremental:
            return self._fetch(keys, start, end, period_s)
        # one read for everything: from the earliest point any key still needs (a key
        # held from before ``start`` needs only its tail; a new key, the whole window)
        needs: dict[tuple[str, str], datetime] = {}
        for key in keys:
            held = self._held.get((*key, period_s))
            if held is None or held[0] > start or held[1].empty:
                needs[key] = start
            else:
                tail = held[1].index[-1].to_pydatetime() - self.overlap
                needs[key] = min(max(start, tail), end - timedelta(seconds=period_s))
        if not keys:
            return {}
        fresh_keys = [k for k in keys if needs[k] == start]
        tail_keys = [k for k in keys if needs[k] != start]
        fetched: dict[tuple[str, str], pd.Series] = {}
        if fresh_keys:
            fetched |= self._fetch(fresh_keys, start, end, period_s)
        if tail_keys:
            fetched |= self._fetch(tail_keys, min(needs[k] for k in tail_keys), end,
                                   period_s)
        out: dict[tuple[str, str], pd.Series] = {}
        lo, hi = pd.Timestamp(start), pd.Timestamp(end)
        for key in keys:
            new = fetched[key]
            held = self._held.get((*key, period_s))
            if held is not None and key in tail_keys:
                old = held[1]
                cut = new.index[0] if not new.empty else pd.Timestamp(needs[key])
                merged = pd.concat([old[old.index < cut], new])
                covered = held[0]
            else:
                merged, covered = new, start
            merged = merged[~merged.index.duplicated(keep="last")].sort_index()
            # keep the longest window any caller of this source asked for (the healer's
            # lookback and the watch's window share one source in a woken run); older
            # points are never asked for again
            span = max(self._span.get(key, timedelta(0)), end - start)
            self._span[key] = span
            keep_from = max(covered, end - span)
            self._held[(*key, period_s)] = (keep_from,
                                            merged[merged.index >= pd.Timestamp(keep_from)])
            out[key] = merged[(merged.index >= lo) & (merged.index < hi)]
        return out

    def latest(self, dim: str, metric: str, since: datetime) -> float | None:
        """The newest data point strictly after ``since`` (None until one arrives)."""
        end = datetime.now(UTC) + timedelta(seconds=2)
        s = self._fetch([(dim, metric)], since, end, 1)[(dim, metric)]
        s = s[s.index > pd.Timestamp(since)]
        return None if s.empty else float(s.iloc[-1])


def _points_series(pts: list[tuple[datetime, float]]) -> pd.Series:
    idx = pd.DatetimeIndex([t for t, _ in pts], tz="UTC") if pts else pd.DatetimeIndex(
        [], tz="UTC")
    return pd.Series([v for _, v in pts], index=idx, dtype=float)


# --------------------------------------------------------------------------- detection


@dataclass
class MetricJudgement:
    """What the detectors said about one metric of one target in this pass."""

    target: str
    metric: str
    latest: float | None
    latest_at: datetime | None
    anomalies: list[Anomaly]  # every anomaly in the lookback
    forecaster_used: bool
    points: int
    recent_since: datetime | None = None
    #: the incident detector's incidents (one per episode, at its newest evidence): what
    #: confirms a matrix row's condition; anomalies of metrics no row covers stay with
    #: the two-model detector, whose model 2 explains legitimate (seasonal) spikes
    incidents: list[Anomaly] = field(default_factory=list)

    def recent(self) -> list[Anomaly]:
        if self.recent_since is None:
            return list(self.anomalies)
        return [a for a in self.anomalies if a.timestamp >= pd.Timestamp(self.recent_since)]

    def best(self) -> Anomaly | None:
        """The newest high-confidence recent anomaly, else the newest recent one."""
        recent = self.recent()
        high = [a for a in recent if a.high_confidence]
        pool = high or recent
        return pool[-1] if pool else None


def metric_key(target: Target, metric: str) -> str:
    return f"{target.estate}/{target.server_id}/{metric}"


class ForecasterCache:
    """Trained forecasters per metric key for one healer. The loading itself is cached
    per process by :func:`migrationbox.healer.tracking.load_latest_forecaster` (keyed by
    metric key and MLflow run id, from the forecaster index: no MLflow import on the
    sensing path); this keeps the answer, including "none", for the healer's life."""

    def __init__(self) -> None:
        self._cache: dict[str, Forecaster | None] = {}

    def get(self, key: str) -> Forecaster | None:
        if key not in self._cache:
            from migrationbox.healer.tracking import load_latest_forecaster

            try:
                self._cache[key] = load_latest_forecaster(key)
            except Exception:  # tracking store unreachable: model 1 only, said in judgement
                self._cache[key] = None
        return self._cache[key]


def judge(target: Target, metric: str, series: pd.Series, *, now: datetime,
          config: SensingConfig, forecasters: ForecasterCache | None) -> MetricJudgement:
    series = series.dropna()
    if series.empty:
        return MetricJudgement(target.server_id, metric, None, None, [], False, 0)
    latest, latest_at = float(series.iloc[-1]), series.index[-1].to_pydatetime()
    if len(series) < config.detector.zscore.min_history + 1:
        return MetricJudgement(target.server_id, metric, latest, latest_at, [], False,
                               len(series))
    cutoff = pd.Timestamp(now - config.recent)
    forecaster = None
    if config.use_forecasters and forecasters is not None:
        # model 2 is only needed where model 1 flagged something recently: skip the
        # tracking-store lookup otherwise (the common, quiet case)
        z = zscore_scores(series, config.detector.zscore)
        if bool(z["model1"].any()):
            forecaster = forecasters.get(metric_key(target, metric))
    # the sensing path never fits Prophet inline: chunks of one sample use the trained
    # forecaster for points after its training window, and model 2 abstains before it
    fc = replace(config.detector.forecast, min_train_history=timedelta(days=3650),
                 retrain_every=timedelta(seconds=max(1, config.period_s)))
    detector = Detector(replace(config.detector, forecast=fc, lazy_forecast=True))
    anomalies = list(detector.detect(series, forecaster=forecaster).anomalies)
    incidents: list[Anomaly] = []
    if config.incident is not None and len(series) > config.incident.min_history:
        # the same incident detector `detect` and the NAB benchmark measure: one record
        # per incident at its newest evidence, high on a clear or sustained deviation by
        # itself (the two-model detector is high only when a loaded forecaster agrees)
        incidents = IncidentDetector(config.incident).judge_live(series)
    return MetricJudgement(target.server_id, metric, latest, latest_at, anomalies,
                           forecaster is not None, len(series), cutoff.to_pydatetime(),
                           incidents)


def sustained_seconds(series: pd.Series, holds: Any, period_s: float = 1.0,
                      max_gap: int = 2) -> tuple[float, datetime | None]:
    """How long ``holds(value)`` has been true up to the newest point, and since when.

    This is *the* test of "a matrix condition holds": the pass (a spell > 0 is watched
    or acted on) and the estate watch (a spell > 0 wakes the healer) both call it, so the
    watch never wakes a run for something the pass would call quiet on the same points.

    Up to ``max_gap`` consecutive points that miss the condition inside the spell do not
    end it (CloudWatch alarms' "M out of N" idea): a busy host's CPU at 89 % for one
    sample is still a busy host. The newest point itself must hold.
    """
    s = series.dropna()
    if s.empty or not holds(float(s.iloc[-1])):
        return 0.0, None
    start = s.index[-1]
    gap = 0
    for ts, value in zip(reversed(s.index), reversed(s.to_numpy()), strict=True):
        if holds(float(value)):
            start, gap = ts, 0
            continue
        gap += 1
        if gap > max_gap:
            break
    return (s.index[-1] - start).total_seconds() + period_s, start.to_pydatetime()


def train_forecasters(targets: Iterable[Target], *, source: MetricSource | None = None,
                      config: SensingConfig | None = None, end: datetime | None = None,
                      metrics: Iterable[str] = CONTINUOUS) -> dict[str, str]:
    """Fit and log (MLflow) one Prophet forecaster per continuous metric of each target,
    on the ``lookback`` of history ending at ``end``. Returns ``{metric_key: run_id}``;
    a series too short to fit is skipped."""
    from migrationbox.healer.tracking import log_forecaster

    cfg = config or SensingConfig()
    src = source or MetricSource(cfg.namespace)
    end = end or datetime.now(UTC)
    tlist = [t for t in targets if t.service]
    keys = [(t.metric_id, m) for t in tlist for m in metrics]
    data = src.series(keys, end - cfg.lookback, end, cfg.period_s)
    runs: dict[str, str] = {}
    for t in tlist:
        for m in metrics:
            s = data[(t.metric_id, m)].dropna()
            if len(s) < 10:
                continue
            fc = Forecaster.fit(s, cfg.detector.forecast)
            runs[metric_key(t, m)] = log_forecaster(metric_key(t, m), fc,
                                                    metrics={"n_train": float(len(s))})
    return runs


def start_lab_publishing(control_url: str, endpoint_url: str, interval_s: float = 1.0,
                         namespace: str = NAMESPACE, timeout: float = 180.0
                         ) -> dict[str, Any]:
    """Ask a lab service process to publish its services' metrics (idempotent), and
    return once its first points are published (the publisher builds its cloud adapter
    in its own thread, which can take a while on a busy machine)."""
    r = httpx.post(f"{control_url}/metrics/publish", json={
        "endpoint_url": endpoint_url, "interval_s": interval_s, "namespace": namespace},
        timeout=10.0)
    r.raise_for_status()
    deadline = time.monotonic() + timeout
    status = r.json()
    while not status.get("published"):
        if time.monotonic() > deadline:
            raise TimeoutError(f"the lab published no metrics within {timeout:g} s: "
                               f"{status.get('last_error') or 'no error reported'}")
        time.sleep(0.5)
        status = httpx.get(f"{control_url}/metrics/publish", timeout=10.0).json()
    return dict(status)


def wait_for_points(source: MetricSource, keys: list[tuple[str, str]], n: int,
                    timeout: float = 60.0) -> None:
    """Block until every series has at least ``n`` points (test and bench helper)."""
    deadline = time.monotonic() + timeout
    while True:
        now = datetime.now(UTC)
        data = source.series(keys, now - timedelta(minutes=30), now + timedelta(seconds=2))
        short = {k: len(v) for k, v in data.items() if len(v) < n}
        if not short:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"metrics not published in {timeout:g} s: {short}")
        time.sleep(1.0)


def by_target(judgements: Iterable[MetricJudgement]) -> Mapping[str, list[MetricJudgement]]:
    out: dict[str, list[MetricJudgement]] = {}
    for j in judgements:
        out.setdefault(j.target, []).append(j)
    return out
