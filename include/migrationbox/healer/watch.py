"""The cheap look that decides whether the healer needs waking (the Asset-watcher mechanism).

A full sensing pass (:meth:`migrationbox.healer.runtime.Healer.run_pass`) stores every
probe, reads minutes of history, runs two detectors and a root-cause search. Most of the
time the estate is fine and all of that finds nothing. :class:`EstateWatch` is the part
that can say "something is off" for a fraction of the cost, so that it can run every few
seconds inside the triggerer (:mod:`migrationbox.healer.watch_trigger`) and wake the heal
DAG only when there is work:

* a target's health is not ``healthy`` (one probe, nothing stored);
* a database target has sessions blocked behind another session's locks, or rows that
  differ from its backup with nothing explaining it (the probe facts);
* a matrix row's condition holds on the newest point of its metric, judged by the pass's
  own function (:func:`migrationbox.healer.sensing.sustained_seconds` > 0; no "for how
  long": the woken healer judges that), so the watch and the pass agree on the same points;
* a continuous metric no row covers (latency, error and request rates) has its last
  ``zscore_run`` points all beyond the z-score threshold on the same side, so one noisy
  point does not wake anybody.

It reads the same targets, endpoints and CloudWatch series as the healer, one
``GetMetricData`` call per check over ``window`` (90 s: the z-score window plus margin),
incremental after the first check (:class:`migrationbox.healer.sensing.MetricSource`).
A woken heal run uses the same check on its own source before handing back
(:func:`migrationbox.healer.jobs.sense_window`): it does not return to the watcher while
the watch would still wake it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any


@dataclass(frozen=True)
class Signal:
    """One reason to wake the healer."""

    estate: str
    server_id: str
    kind: str  # health | fact | condition | anomaly
    detail: str

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


@dataclass
class WatchResult:
    signals: list[Signal]
    targets: int
    #: why the check saw less than usual (monitoring API down, an estate that failed)
    problems: list[str]


class EstateWatch:
    def __init__(self, *, source: Any = None, matrix: Any = None,
                 window: timedelta = timedelta(seconds=90), zscore_run: int = 3,
                 probe_timeout_s: float = 2.0) -> None:
        from migrationbox.healer.decision import load_matrix
        from migrationbox.healer.sensing import lab_detector_config

        self._source = source
        self.matrix = matrix or load_matrix()
        self.window = window
        self.zscore = lab_detector_config().zscore
        self.zscore_run = zscore_run
        self.probe_timeout_s = probe_timeout_s

    @property
    def source(self) -> Any:
        if self._source is None:
            from migrationbox.healer.sensing import MetricSource

            self._source = MetricSource()
        return self._source

    def check(self, estates: Iterable[str]) -> WatchResult:
        from migrationbox.healer.sensing import load_targets

        signals: list[Signal] = []
        problems: list[str] = []
        count = 0
        for estate in estates:
            try:
                targets = load_targets(estate)
                count += len(targets)
                signals.extend(self.check_targets(targets, problems))
            except Exception as exc:  # one broken estate must not blind the others
                problems.append(f"{estate}: {type(exc).__name__}: {exc}")
        return WatchResult(signals, count, problems)

    def check_targets(self, targets: Sequence[Any], problems: list[str]) -> list[Signal]:
        from migrationbox.healer.health import HealthStatus
        from migrationbox.healer.sensing import PROBE_FACTS, probe

        now = datetime.now(UTC)
        out: list[Signal] = []
        for t in targets:
            result = probe(t, at=now, previous=None, timeout=self.probe_timeout_s)
            if result.status not in (HealthStatus.healthy, HealthStatus.unknown):
                out.append(Signal(t.estate, t.server_id, "health",
                                  f"{result.status.value}: {result.detail}".strip(": ")))
            facts = result.components.get("database") or {}
            for fact in PROBE_FACTS:
                if facts.get(fact):
                    out.append(Signal(t.estate, t.server_id, "fact",
                                      f"{fact} = {facts[fact]}"))
        watched = [t for t in targets if t.service]
        if not watched:
            return out
        try:
            data = self._series(watched, now)
        except Exception as exc:  # health signals still count; the healer notes the outage
            problems.append(f"monitoring API failed: {type(exc).__name__}: {exc}")
            return out
        for t in watched:
            out.extend(self._metric_signals(t, data))
        return out

    def _series(self, targets: Sequence[Any], now: datetime) -> dict[tuple[str, str], Any]:
        from migrationbox.healer.sensing import READ

        keys = [(t.metric_id, m) for t in targets for m in READ]
        return self.source.series(keys, now - self.window, now + timedelta(seconds=1))

    def _metric_signals(self, t: Any, data: dict[tuple[str, str], Any]) -> list[Signal]:
        from migrationbox.healer.detect import zscore_scores
        from migrationbox.healer.sensing import CONTINUOUS, sustained_seconds

        out: list[Signal] = []
        covered: set[str] = set()
        for row in self.matrix.rows:
            metric = row.condition.metric
            covered.add(metric)
            series = data.get((t.metric_id, metric))
            if series is None or series.dropna().empty:
                continue
            # the pass's own test (a spell ending at the newest point), so that a run
            # this signal wakes sees the same condition on the same points
            held, _since = sustained_seconds(series, row.condition.holds)
            if held > 0:
                latest = float(series.dropna().iloc[-1])
                out.append(Signal(t.estate, t.server_id, "condition",
                                  f"{metric} {row.condition.operator} "
                                  f"{row.condition.threshold:g} ({latest:g}): {row.id}"))
        for metric in CONTINUOUS:
            if metric in covered:
                continue
            series = data.get((t.metric_id, metric))
            if series is None or len(series.dropna()) < self.zscore.min_history + \
                    self.zscore_run:
                continue
            z = zscore_scores(series.dropna(), self.zscore)["z"].tail(self.zscore_run)
            if z.isna().any():
                continue
            if bool((z > self.zscore.threshold).all() or (z < -self.zscore.threshold).all()):
                out.append(Signal(t.estate, t.server_id, "anomaly",
                                  f"{metric} z-score {float(z.iloc[-1]):+.1f} for the last "
                                  f"{self.zscore_run} points"))
        return out
