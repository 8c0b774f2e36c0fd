"""The plan's automatic rollback triggers, evaluated on one step's metrics.

From the plan (Phase 6): error rate more than 5 points over the baseline; P95 latency
over 2× the baseline (with a floor, since a loopback baseline of 1 ms would make 3 ms
"a regression"); failed health checks over 10 % of the health requests; CPU or memory
over 95 % sustained (for 2 minutes in production: every sample of a window at least
that long is over the limit). The baseline is the source service measured the same way
just before the first step.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

from migrationbox.cutover.metrics import Window

if TYPE_CHECKING:
    from migrationbox.phases.options import CutoverOptions


@dataclass(frozen=True)
class RollbackRules:
    error_rate_points: float = 5.0
    latency_factor: float = 2.0
    latency_floor_ms: float = 250.0
    health_fail_pct: float = 10.0
    saturation_pct: float = 95.0
    sustained_s: float = 120.0

    @classmethod
    def from_options(cls, options: CutoverOptions) -> RollbackRules:
        """The rules a run set in its conf's ``cutover`` section (defaults: the plan's)."""
        return cls(
            error_rate_points=options.error_rate_points,
            latency_factor=options.latency_factor,
            latency_floor_ms=options.latency_floor_ms,
            health_fail_pct=options.health_fail_pct,
            saturation_pct=options.saturation_pct,
            sustained_s=options.sustained_seconds,
        )

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


@dataclass(frozen=True)
class Breach:
    rule: str
    record: str
    observed: float
    limit: float
    message: str


def evaluate(rules: RollbackRules, record: str, baseline: Window, current: Window,
             window_s: float) -> list[Breach]:
    """Every rule the step's window breaks (empty: the step is healthy)."""
    out: list[Breach] = []
    err_limit = baseline.error_rate + rules.error_rate_points / 100
    if current.error_rate > err_limit:
        out.append(Breach("error_rate", record, current.error_rate, err_limit,
                          f"{record}: error rate {current.error_rate:.1%} > baseline "
                          f"{baseline.error_rate:.1%} + {rules.error_rate_points:g} points "
                          f"({int(current.errors)}/{int(current.requests)})"))
    p95_limit = max(rules.latency_factor * baseline.p95_ms, rules.latency_floor_ms)
    if current.p95_ms > p95_limit:
        out.append(Breach("p95_latency", record, current.p95_ms, p95_limit,
                          f"{record}: P95 latency {current.p95_ms:.0f} ms > limit "
                          f"{p95_limit:.0f} ms ({rules.latency_factor:g}x baseline "
                          f"{baseline.p95_ms:.0f} ms)"))
    if current.health_checks and current.health_fail_rate > rules.health_fail_pct / 100:
        out.append(Breach("health_checks", record, current.health_fail_rate,
                          rules.health_fail_pct / 100,
                          f"{record}: {int(current.health_failed)}/{int(current.health_checks)}"
                          f" health checks failed (> {rules.health_fail_pct:g}%)"))
    if window_s >= rules.sustained_s:
        for what, value in (("CPU", current.cpu_min_pct), ("memory", current.memory_min_pct)):
            if value is not None and value > rules.saturation_pct:
                out.append(Breach(f"{what.lower()}_saturation", record, value,
                                  rules.saturation_pct,
                                  f"{record}: {what} above {rules.saturation_pct:g}% for "
                                  f"{window_s:.0f}s (lowest sample {value:.0f}%)"))
    return out
