"""Verification that proves recovery: the window rule, and the executor driven against an
in-process monitoring source on a simulated clock (the scale-out case of the demo: a
0.97-core burn scaled out from 1 to 3 instances must verify on ~32 % points, never on the
0 % reading that follows the scale-out call)."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd
import pytest
from sqlalchemy import create_engine

from migrationbox.healer.decision import load_matrix
from migrationbox.healer.incident import VerificationRecord
from migrationbox.healer.remediation import RemediationContext, execute
from migrationbox.healer.runtime import Healer
from migrationbox.healer.sensing import Target
from migrationbox.healer.verification import (
    SINGLE_READING,
    Point,
    VerifyWindow,
    judge,
    watch,
)

T0 = datetime(2026, 12, 7, 10, 0, 0, tzinfo=UTC)
CPU = "cpu_utilization_pct"
BURN = 0.97  # cores of demand, as the chaos lab's cpu_burn scenario


def above_90(v: float) -> bool:
    return v > 90


def pts(start_s: float, values: list[float], step_s: float = 1.0) -> list[Point]:
    return [Point(T0 + timedelta(seconds=start_s + i * step_s), v) for i, v in enumerate(values)]


CPU_WINDOW = VerifyWindow(min_points=5, min_seconds=4, settle_seconds=3, zero_is_reset=True)


# --------------------------------------------------------------------------- the rule


def test_an_empty_window_never_verifies() -> None:
    v = judge([], effective_at=T0, window=CPU_WINDOW, still_bad=above_90)
    assert not v.recovered and "no point published after" in v.reason
    assert v.stats() is None and "no point" in v.summary()


def test_points_from_before_the_action_took_effect_do_not_count() -> None:
    before = pts(-10, [30.0] * 10)  # recovered-looking values, all at or before T0
    v = judge(before, effective_at=T0, window=CPU_WINDOW, still_bad=above_90)
    assert not v.recovered and v.after == 0
    # one genuine point after the instant is not enough on its own
    v = judge(before + pts(1, [31.0]), effective_at=T0, window=CPU_WINDOW, still_bad=above_90)
    assert not v.recovered and [p.value for p in v.points] == [31.0]
    assert "1 of 5 point(s)" in v.reason


def test_a_reset_reading_never_counts_as_recovery() -> None:
    zeros = judge(pts(1, [0.0] * 8), effective_at=T0, window=CPU_WINDOW, still_bad=above_90)
    assert not zeros.recovered and zeros.points == ()
    assert "reset reading 0" in zeros.reason
    # a 0 inside a run breaks it: the evidence is the run after it
    v = judge(pts(1, [32.0, 33.0, 0.0, 32.5, 32.1]), effective_at=T0, window=CPU_WINDOW,
              still_bad=above_90)
    assert not v.recovered and [p.value for p in v.points] == [32.5, 32.1]
    assert any("reset reading 0" in b for b in v.breaks)


def test_zero_is_a_healthy_value_where_the_row_says_so() -> None:
    window = VerifyWindow(min_points=2, min_seconds=1, settle_seconds=0)  # zero_is_reset off
    v = judge(pts(1, [0.0, 0.0, 0.0]), effective_at=T0, window=window,
              still_bad=lambda x: x > 0, condition="dns_stale_resolvers > 0")
    assert v.recovered and v.stats() == {"n": 3.0, "min": 0.0, "mean": 0.0, "max": 0.0,
                                          "span_s": 2.0}


def test_a_too_short_window_does_not_verify() -> None:
    few = judge(pts(1, [32.0] * 4), effective_at=T0, window=CPU_WINDOW, still_bad=above_90)
    assert not few.recovered and "4 of 5 point(s)" in few.reason
    brief = judge(pts(1, [32.0] * 6, step_s=0.5), effective_at=T0, window=CPU_WINDOW,
                  still_bad=above_90)  # enough points, but over 2.5 s of the 4 asked
    assert not brief.recovered and "2.5 of 4 s" in brief.reason


def test_a_point_still_meeting_the_condition_restarts_the_run() -> None:
    v = judge(pts(1, [32.0, 31.0, 30.0, 94.0, 33.0, 32.0]), effective_at=T0,
              window=CPU_WINDOW, still_bad=above_90)
    assert not v.recovered and [p.value for p in v.points] == [33.0, 32.0]
    assert any("still" in b and "94" in b for b in v.breaks)
    last_bad = judge(pts(1, [32.0] * 6 + [95.0]), effective_at=T0, window=CPU_WINDOW,
                     still_bad=above_90)
    assert not last_bad.recovered and "no recovered point since the last break" in \
        last_bad.reason


def test_a_gap_or_a_missing_value_starts_the_series_again() -> None:
    gap = pts(1, [32.0] * 5) + pts(30, [32.0, 32.0])  # 25 s without points
    v = judge(gap, effective_at=T0, window=CPU_WINDOW, still_bad=above_90)
    assert not v.recovered and len(v.points) == 2 and "series restarted" in v.breaks[0]
    nan = judge(pts(1, [32.0, 32.0, math.nan, 32.0]), effective_at=T0, window=CPU_WINDOW,
                still_bad=above_90)
    assert not nan.recovered and len(nan.points) == 1


def test_genuine_recovery_verifies_and_says_on_what() -> None:
    values = [32.1, 32.4, 31.9, 32.6, 32.2]
    v = judge(pts(4, values), effective_at=T0, window=CPU_WINDOW, still_bad=above_90,
              condition="cpu_utilization_pct > 90")
    assert v.recovered and v.span_seconds == 4.0
    s = v.stats()
    assert s is not None and s["min"] == 31.9 and s["max"] == 32.6
    assert s["mean"] == pytest.approx(sum(values) / 5)
    text = v.summary()
    assert "n=5 over 4.0 s" in text and "min 31.9" in text and "max 32.6" in text
    assert "10:00:04 32.1" in text and "10:00:08 32.2" in text


def test_the_window_is_validated() -> None:
    with pytest.raises(ValueError, match="needs min_points >= 2"):
        VerifyWindow(min_points=1, min_seconds=3)
    with pytest.raises(ValueError):
        VerifyWindow(min_points=0)
    with pytest.raises(ValueError):
        VerifyWindow(settle_seconds=-1)


# --------------------------------------------------------------------------- simulated lab


class SimClock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += timedelta(seconds=max(seconds, 0.0))


class BurningService:
    """A service with a CPU burn behind a load balancer, as the chaos lab models it: each
    instance runs ``demand / instances`` of a core (at most 95 %), published every second
    on the simulated clock. The lab's scale-out call starts a new measuring interval, so
    the reading right after it covers (almost) no time and reads 0 — what the demo's
    verification was fooled by. ``reports_after_scale=False``: the service stops
    reporting anything but 0 after the scale-out (instances that never come up)."""

    def __init__(self, clock: SimClock, demand: float = BURN,
                 reports_after_scale: bool = True) -> None:
        self.clock, self.demand, self.instances = clock, demand, 1
        self.reports = reports_after_scale
        self.scaled_at: datetime | None = None
        self.scale_times: list[datetime] = []
        self.published: list[tuple[datetime, float]] = []
        self._next = T0 - timedelta(seconds=30)

    def publish(self) -> None:
        while self._next <= self.clock():
            at = self._next
            if self.scaled_at is not None and at > self.scaled_at and (
                    not self.reports or not any(t > self.scaled_at for t, _ in
                                                self.published)):
                value = 0.0  # the reset reading (or a service that stopped reporting)
            else:
                value = min(95.0, 100.0 * self.demand / self.instances)
            self.published.append((at, round(value, 2)))
            self._next += timedelta(seconds=1)

    def scale(self, instances: int) -> None:
        self.publish()
        self.instances, self.scaled_at = instances, self.clock()
        self.scale_times.append(self.scaled_at)


class FakeMonitoring:
    """The monitoring API the healer reads back through (``MetricSource``'s interface):
    what the service published, up to now."""

    def __init__(self, service: BurningService, dim: str, fail: bool = False) -> None:
        self.service, self.dim, self.fail, self.calls = service, dim, fail, 0

    def series(self, keys: Any, start: datetime, end: datetime, period_s: int = 1
               ) -> dict[tuple[str, str], pd.Series]:
        self.calls += 1
        if self.fail:
            raise ConnectionError("monitoring API unreachable")
        self.service.publish()
        out = {}
        for dim, metric in keys:
            rows = [(t, v) for t, v in self.service.published
                    if dim == self.dim and metric == CPU and start <= t <= end]
            out[(dim, metric)] = pd.Series([v for _, v in rows], dtype=float,
                                           index=pd.DatetimeIndex([t for t, _ in rows]))
        return out


class ScaleOut:
    """The lab side of horizontal_scale on the simulated service (+2 instances)."""

    action = "horizontal_scale"
    risky = False

    def __init__(self, service: BurningService) -> None:
        self.service = service

    def precheck(self, ctx: RemediationContext) -> str | None:
        return None

    def apply(self, ctx: RemediationContext, log) -> dict[str, Any]:
        before = self.service.instances
        self.service.scale(before + int(ctx.params.get("add_instances", 2)))
        log(f"scaled out from {before} to {self.service.instances} instance(s)")
        return {"before": before}

    def rollback(self, ctx: RemediationContext, undo: dict[str, Any], log) -> None:
        self.service.scale(undo["before"])
        log(f"scaled back to {undo['before']}")


def scale_out_run(*, reports: bool = True, window: VerifyWindow | None = None,
                  fail: bool = False, timeout_s: float = 20.0):
    clock = SimClock()
    service = BurningService(clock, reports_after_scale=reports)
    target = Target(estate="e", server_id="web-01", wave=1, service="web-01:target")
    source = FakeMonitoring(service, target.metric_id, fail=fail)
    healer = Healer(create_engine("sqlite://"), source=source, notifiers=[])  # type: ignore[arg-type]
    row = healer.matrix.row("high_cpu")
    assert row is not None
    ctx = RemediationContext(
        estate="e", server_id="web-01", action=row.action, params=dict(row.action_params),
        remediation_id="r-sim", service=target.service,
        signal=healer.recovery_signal(target, row),
        verify_window=window or row.verify, verify_timeout_s=timeout_s,
        verify_interval_s=1.0, clock=clock, sleep=clock.sleep)
    out = execute(ScaleOut(service), ctx)
    return out, service, row


def test_scale_out_verifies_on_a_third_of_the_burn_never_on_the_zero_after_it() -> None:
    out, service, row = scale_out_run()
    assert row.verify.zero_is_reset and row.verify.min_points == 5
    assert out.success and out.verified and service.instances == 3
    v = out.verification
    assert v is not None and out.effective_at is not None
    assert service.scaled_at is not None
    assert out.effective_at >= service.scaled_at + timedelta(seconds=row.verify.settle_seconds)
    # the evidence: points published after the action took effect, about a third of the burn
    assert all(p.at > out.effective_at for p in v.points)
    assert len(v.points) >= row.verify.min_points and v.span_seconds >= row.verify.min_seconds
    third = 100.0 * BURN / 3
    assert all(p.value == pytest.approx(third, abs=0.01) for p in v.points)
    # the first point after the scale-out (the 0 reading) is not part of it
    first_after = next(val for t, val in service.published if t > service.scaled_at)
    assert first_after == 0.0 and 0.0 not in [p.value for p in v.points]
    # the window's values are in the steps (hence the incident's timeline)
    verified = [text for _, text in out.steps if text.startswith("verified: ")]
    assert verified and f"mean {third:.4g}" in verified[0] and "values " in verified[0]
    record = VerificationRecord.of(v, row.verify)
    stats = record.stats()
    assert record.verified and stats is not None and stats["n"] == len(v.points)
    assert stats["mean"] == pytest.approx(third, abs=0.01)


def test_scale_out_without_settle_ignores_the_zero_as_a_reset_reading() -> None:
    window = VerifyWindow(min_points=5, min_seconds=4, settle_seconds=0, zero_is_reset=True)
    out, _, _ = scale_out_run(window=window)
    assert out.success and out.verification is not None
    assert any("reset reading 0" in b for b in out.verification.breaks)
    assert all(p.value > 0 for p in out.verification.points)


def test_a_zero_percent_reading_after_scale_out_is_not_recovery() -> None:
    """Instances that report nothing but 0 after the scale-out: the old first-point check
    would have passed on the first 0; the window never verifies, and the action is undone."""
    out, service, row = scale_out_run(reports=False, timeout_s=12.0)
    assert not out.success and not out.verified and out.rolled_back
    assert service.instances == 1  # rolled back
    assert out.rollback_reason and "did not recover" in out.rollback_reason
    failed = [text for _, text in out.steps if text.startswith("verification failed: ")]
    assert failed and "reset reading 0" in failed[0]
    # the refusal shows what it refused on: the points after the action, all 0
    assert "no recovered run" in failed[0] and "min 0 / mean 0 / max 0" in failed[0]
    assert out.verification is not None and out.verification.seen
    assert {p.value for p in out.verification.seen} == {0.0}
    # what a single reading would have concluded: recovered, from a 0
    scaled_out = service.scale_times[0]
    single = judge([Point(t, v) for t, v in service.published], effective_at=scaled_out,
                   window=SINGLE_READING, still_bad=row.condition.holds)
    assert single.recovered and single.points[0].value == 0.0


def test_a_monitoring_api_that_stops_answering_is_not_evidence() -> None:
    out, service, _ = scale_out_run(fail=True, timeout_s=6.0)
    assert not out.success and out.rolled_back and service.instances == 1
    assert any("read failed: ConnectionError" in text for _, text in out.steps)


def test_watch_waits_for_the_settle_before_the_first_look() -> None:
    clock = SimClock()
    looked: list[datetime] = []

    class Signal:
        condition = "cpu_utilization_pct > 90"

        def read(self, since: datetime, now: datetime) -> list[Point]:
            looked.append(clock())
            return [Point(since + timedelta(seconds=s), 30.0) for s in (1, 2, 3)]

        def still_bad(self, value: float) -> bool:
            return value > 90

    effective = T0 + timedelta(seconds=5)
    result = watch(Signal(), VerifyWindow(min_points=3, min_seconds=2), effective,
                   timeout_s=10, interval_s=1, clock=clock, sleep=clock.sleep)
    assert result.ok and looked and looked[0] >= effective


def test_matrix_rows_carry_windows_that_can_verify() -> None:
    matrix = load_matrix()
    for row in matrix.rows:
        assert row.verify.min_points >= 2, row.id
    assert matrix.row("high_cpu").verify.zero_is_reset  # type: ignore[union-attr]
    assert not matrix.row("dns_propagation_incomplete").verify.zero_is_reset  # type: ignore[union-attr]


def test_the_healer_refuses_a_window_that_cannot_fit_its_timeout() -> None:
    from migrationbox.healer.runtime import HealerSettings

    with pytest.raises(ValueError, match=r"'high_cpu': verify.min_seconds 4 does not fit"):
        Healer(create_engine("sqlite://"), HealerSettings(verify_timeout_s=3.0),
               source=FakeMonitoring(BurningService(SimClock()), "x"),  # type: ignore[arg-type]
               notifiers=[])
