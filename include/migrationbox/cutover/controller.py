"""The canary controller: weighted DNS steps, live metrics, automatic rollback.

For each step (5 → 25 → 50 → 100 % by default) the controller

1. checks that every weighted record still holds the weights it last set — a record
   changed by hand is reported with the values found, and traffic goes back to the
   source (the one state known to be safe) instead of building on a change nobody
   reviewed;
2. sets the step's weights (one atomic change per record);
3. for the dwell time, probes every target service in batches, publishes each batch
   to CloudWatch and reads the step's window back, and evaluates the rollback rules
   after *every* batch, so a trigger acts within the step, not at its end;
4. on a trigger, or when the monitoring API stops answering (a blind canary is not
   allowed to go on), sets 100 % source for every service at once, reads the records
   back to confirm, and records why and how long the way back took.

Nothing here knows about Airflow; ``phases.cutover`` wires it to the run's context.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from migrationbox.cutover.metrics import (
    Batch,
    CanaryMetrics,
    MetricsUnavailable,
    Window,
    probe_batch,
)
from migrationbox.cutover.rules import RollbackRules, evaluate


class CanaryService(Protocol):
    record: str
    source_value: str
    target_value: str

    @property
    def source_url(self) -> str: ...

    @property
    def target_url(self) -> str: ...


@dataclass
class CanarySettings:
    steps: list[int]
    dwell_s: float = 5.0
    requests: int = 20
    health_checks: int = 10
    timeout_s: float = 5.0
    probe_interval_s: float = 1.0
    ttl: int = 30


@dataclass
class CanaryOutcome:
    ok: bool
    steps: list[dict[str, Any]] = field(default_factory=list)
    baseline: dict[str, dict[str, Any]] = field(default_factory=dict)
    failed_at: int | None = None
    reason: str | None = None
    trigger: str | None = None  # "rule", "dns_changed", "metrics_unavailable"
    rollback_seconds: float | None = None
    dns_changed_by_hand: dict[str, dict[str, int]] = field(default_factory=dict)
    final_weights: dict[str, dict[str, int]] = field(default_factory=dict)


class CanaryController:
    def __init__(self, *, adapter: Any, zone_id: str, services: list[Any],
                 settings: CanarySettings, rules: RollbackRules, metrics: CanaryMetrics,
                 say: Callable[[str, dict[str, Any]], None] | None = None):
        self.adapter = adapter
        self.zone_id = zone_id
        self.services = services
        self.settings = settings
        self.rules = rules
        self.metrics = metrics
        self.say = say or (lambda _m, _d: None)

    # ------------------------------------------------------------------ DNS
    def weights(self, svc: Any) -> dict[str, int]:
        return {w.set_identifier: w.weight
                for w in self.adapter.get_weighted_records(self.zone_id, svc.record)}

    def set_all(self, pct: int) -> None:
        for svc in self.services:
            self.adapter.upsert_weighted_records(self.zone_id, svc.record, svc.source_value,
                                                 svc.target_value, pct, ttl=self.settings.ttl)

    def _unexpected(self, expected: dict[str, dict[str, int]]) -> dict[str, dict[str, int]]:
        found = {}
        for svc in self.services:
            now = self.weights(svc)
            if now != expected.get(svc.record, now):
                found[svc.record] = now
        return found

    # ------------------------------------------------------------------ metrics
    def baseline(self) -> dict[str, Window]:
        """The source services measured like the target will be, through CloudWatch."""
        start = datetime.now(UTC)
        out: dict[str, Window] = {}
        for svc in self.services:
            if not svc.source_url:
                out[svc.record] = Window()
                continue
            b = probe_batch(svc.source_url, self.settings.requests,
                            self.settings.health_checks, self.settings.timeout_s, deep=False)
            self.metrics.publish(svc.record, "source", "baseline", b)
            out[svc.record] = self.metrics.window(svc.record, "source", "baseline", start)
        return out

    def _probe_step(self, pct: int, start: datetime, baseline: dict[str, Window],
                    ) -> tuple[list[str], dict[str, Any], dict[str, Batch]]:
        batches = {svc.record: probe_batch(
            svc.target_url, self.settings.requests, self.settings.health_checks,
            self.settings.timeout_s,
            latency_limit_ms=max(self.rules.latency_factor * baseline[svc.record].p95_ms,
                                 self.rules.latency_floor_ms))
            for svc in self.services}
        for svc in self.services:
            self.metrics.publish(svc.record, "target", str(pct), batches[svc.record])
        elapsed = (datetime.now(UTC) - start).total_seconds()
        problems: list[str] = []
        windows: dict[str, Any] = {}
        for svc in self.services:
            w = self.metrics.window(svc.record, "target", str(pct), start)
            windows[svc.record] = w.summary()
            problems += [b.message for b in evaluate(self.rules, svc.record,
                                                     baseline[svc.record], w, elapsed)]
            deep = batches[svc.record].deep_status
            if deep is not None and deep != "healthy":
                problems.append(f"{svc.record}: /health/deep status is {deep!r}")
        return problems, windows, batches

    # ------------------------------------------------------------------ the loop
    def rollback_now(self) -> tuple[float, dict[str, dict[str, int]]]:
        """100 % source everywhere; seconds until the records read back that way."""
        t0 = time.monotonic()
        self.set_all(0)
        back = {svc.record: self.weights(svc) for svc in self.services}
        return time.monotonic() - t0, back

    def run(self, steps: list[int], start_weights: dict[str, dict[str, int]],
            baseline: dict[str, Window]) -> CanaryOutcome:
        out = CanaryOutcome(ok=True, baseline={r: w.summary() for r, w in baseline.items()})
        expected = dict(start_weights)
        reprobe_only = not steps
        for pct in steps or [100]:
            t_trigger: float | None = None
            entry: dict[str, Any] = {"weight": pct, "at": datetime.now(UTC).isoformat(),
                                     "problems": [], "batches": 0}
            out.steps.append(entry)
            try:
                changed = self._unexpected(expected)
                if changed:
                    t_trigger = time.monotonic()
                    out.trigger, out.dns_changed_by_hand = "dns_changed", changed
                    entry["problems"] = [
                        f"{r}: weights {w} found, {expected.get(r)} last set by MigrationBox: "
                        "changed outside MigrationBox" for r, w in changed.items()]
                else:
                    if not reprobe_only:
                        self.set_all(pct)
                        expected = {svc.record: {"source": 100 - pct, "target": pct}
                                    for svc in self.services}
                        self.say(f"cutover: {pct}% of traffic to the target for "
                                 f"{len(self.services)} services", {"weight": pct})
                    start = datetime.now(UTC)
                    deadline = time.monotonic() + self.settings.dwell_s
                    while True:
                        problems, windows, batches = self._probe_step(pct, start, baseline)
                        entry["batches"] += 1
                        entry["metrics"] = windows
                        entry["probes"] = {r: {"requests": b.requests, "errors": b.errors,
                                               "p95_ms": round(b.p95_ms, 1),
                                               "deep_status": b.deep_status,
                                               "first_error": b.first_error,
                                               "cpu_pct": b.cpu_pct,
                                               "memory_pct": b.memory_pct}
                                           for r, b in batches.items()}
                        if problems:
                            t_trigger = time.monotonic()
                            out.trigger = "rule"
                            entry["problems"] = problems
                            break
                        left = deadline - time.monotonic()
                        if left <= 0:
                            break
                        time.sleep(min(self.settings.probe_interval_s, left))
                    if t_trigger is None:
                        changed = self._unexpected(expected)
                        if changed:
                            t_trigger = time.monotonic()
                            out.trigger, out.dns_changed_by_hand = "dns_changed", changed
                            entry["problems"] = [
                                f"{r}: weights {w} found during the step, {expected[r]} set "
                                "by MigrationBox: changed outside MigrationBox"
                                for r, w in changed.items()]
            except MetricsUnavailable as exc:
                t_trigger = time.monotonic()
                out.trigger = "metrics_unavailable"
                entry["problems"] = [
                    f"monitoring stopped answering at {pct}%: {exc}. The canary cannot be "
                    "judged blind; check the monitoring endpoint, then run cutover again"]
            entry["weights"] = {svc.record: self.weights(svc) for svc in self.services}
            if t_trigger is not None:
                took, back = self.rollback_now()
                out.ok = False
                out.failed_at = pct
                out.reason = "; ".join(entry["problems"])
                out.rollback_seconds = round(time.monotonic() - t_trigger, 3)
                entry["rollback_seconds"] = out.rollback_seconds
                entry["rollback_dns_seconds"] = round(took, 3)
                out.final_weights = back
                return out
        out.final_weights = {svc.record: self.weights(svc) for svc in self.services}
        return out
