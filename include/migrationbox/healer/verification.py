"""Verification that proves recovery: a window of points published after the action took
effect, never the first reading after it.

Why a window: the first point after an action is not evidence. In the lab demo a 0.97-core
CPU burn scaled out from 1 to 3 instances was "verified" on a reading of 0 % CPU (the
scale-out call starts a new measuring interval, and the next reading covers almost no
time); with the burn spread over three instances about a third of it (~32 %) was
expected. A 0 there says nothing about recovery.

**The instant the action took effect.** The executor notes when the action's ``apply``
returned and adds the row's ``settle_seconds`` (new instances must start reporting, a
restarted process must come up, a measuring interval that began before the action must
end). Only points stamped *strictly after* that instant count. A point's timestamp is the
start of its monitoring period (CloudWatch ``GetMetricData``), so a point counts only when
its whole period began after the instant.

**The window rule** (:func:`judge`). Over the points after the instant, oldest first, the
evidence is the newest *unbroken run* of recovered points. The run is broken (it starts
again after the breaking point) by

* a point that still meets the row's condition (CPU still > 90 %): recovery that does not
  hold is not recovery;
* a *reset reading*: a value of exactly 0 when the row says ``zero_is_reset`` (metrics
  measured over an interval or from counters: CPU time, memory in use; a 0 there is an
  empty interval, a counter that restarted, a process that has not reported yet, not a
  healthy value). Rows whose metric is genuinely 0 when healthy (stale DNS resolvers,
  blocked sessions, checksum mismatches) leave it off;
* a gap longer than ``max_gap_seconds`` between two points (the series stopped; what comes
  after is a series that restarted, which is judged on its own);
* a missing value (NaN).

Recovery is verified when that run has at least ``min_points`` points spanning at least
``min_seconds`` (newest minus oldest timestamp). No points, only reset readings, or a run
too short or too brief never verify; the verdict says which, with the values it looked at
(:meth:`WindowVerdict.summary`), and the incident shows them.

What is read: a published metric is read back from the monitoring API
(:class:`SeriesSignal`); health and the facts the probe measures (blocked sessions,
checksum mismatches) are sampled by the healer, one point per look, stamped when taken
(:class:`SampledSignal`). Looks are ``verify_interval_s`` apart until ``verify_timeout_s``,
counted from the instant, runs out.

Each matrix row carries its window (``verify`` in ``decision_matrix.json``, validated with
the matrix; the healer refuses to start with a row whose ``min_seconds`` does not fit in
its ``verify_timeout_s``); a context built by hand without one is checked on a single
reading, and the outcome says so.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Protocol

from pydantic import BaseModel, ConfigDict, Field, model_validator

#: values shown in a summary before it is shortened to the first and last ones
SHOWN_VALUES = 12


class VerifyWindow(BaseModel):
    """How much evidence a row's recovery needs (see the module docstring for the rule)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    min_points: int = Field(default=3, ge=1, le=1000)
    min_seconds: float = Field(default=2.0, ge=0)
    settle_seconds: float = Field(default=1.0, ge=0)
    max_gap_seconds: float = Field(default=10.0, gt=0)
    zero_is_reset: bool = False

    @model_validator(mode="after")
    def _reachable(self) -> VerifyWindow:
        if self.min_seconds > 0 and self.min_points < 2:
            raise ValueError(f"min_seconds {self.min_seconds:g} > 0 needs min_points >= 2 "
                             "(one point spans no time)")
        return self

    def describe(self) -> str:
        text = f">= {self.min_points} point(s) over >= {self.min_seconds:g} s, " \
               f"{self.settle_seconds:g} s after the action"
        return text + (", a 0 is a reset reading" if self.zero_is_reset else "")


#: a context without a window (built by hand, not from a matrix row): one reading
SINGLE_READING = VerifyWindow(min_points=1, min_seconds=0.0, settle_seconds=0.0)


@dataclass(frozen=True)
class Point:
    at: datetime
    value: float


def _hms(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%H:%M:%S")


@dataclass(frozen=True)
class WindowVerdict:
    """What one look at the window found. ``points`` is the run judged (the evidence);
    ``seen`` every point after the instant (what a refusal without a run refused on);
    ``breaks`` says what broke earlier runs ("reset reading 0 at 10:00:04")."""

    recovered: bool
    reason: str
    effective_at: datetime
    points: tuple[Point, ...] = ()
    seen: tuple[Point, ...] = ()
    breaks: tuple[str, ...] = ()

    @property
    def after(self) -> int:
        return len(self.seen)

    @property
    def span_seconds(self) -> float:
        if len(self.points) < 2:
            return 0.0
        return (self.points[-1].at - self.points[0].at).total_seconds()

    def stats(self) -> dict[str, float] | None:
        """n / min / mean / max / span of the evidence run (None without one)."""
        return stats_of(self.points)

    def values_text(self, points: Sequence[Point] | None = None) -> str:
        shown = list(self.points if points is None else points)
        parts = [f"{_hms(p.at)} {p.value:g}" for p in shown]
        if len(parts) > SHOWN_VALUES:
            half = SHOWN_VALUES // 2
            parts = [*parts[:half], f"... {len(parts) - 2 * half} more ...", *parts[-half:]]
        return ", ".join(parts)

    def summary(self) -> str:
        """One line for the incident: the verdict, the window's statistics and values."""
        head = f"{self.reason} [window after {_hms(self.effective_at)}"
        s = self.stats()
        if s is not None:
            head += (f": n={len(self.points)} over {s['span_s']:.1f} s, min {s['min']:g} / "
                     f"mean {s['mean']:.4g} / max {s['max']:g}; values {self.values_text()}")
        elif self.seen:
            seen = stats_of(self.seen)
            assert seen is not None
            head += (f": no recovered run; {len(self.seen)} point(s) after the action over "
                     f"{seen['span_s']:.1f} s, min {seen['min']:g} / mean {seen['mean']:.4g} / "
                     f"max {seen['max']:g}; values {self.values_text(self.seen)}")
        else:
            head += ": no point"
        if self.breaks:
            head += "; ignored: " + "; ".join(self.breaks[-3:])
            if len(self.breaks) > 3:
                head += f" (+{len(self.breaks) - 3} more)"
        return head + "]"


def stats_of(points: Sequence[Point]) -> dict[str, float] | None:
    """n, min, mean, max (NaN left out) and span in seconds of ``points``."""
    values = [p.value for p in points if not math.isnan(p.value)]
    if not values:
        return None
    span = (points[-1].at - points[0].at).total_seconds() if len(points) > 1 else 0.0
    return {"n": float(len(values)), "min": min(values), "mean": sum(values) / len(values),
            "max": max(values), "span_s": span}


def judge(points: Sequence[Point], *, effective_at: datetime, window: VerifyWindow,
          still_bad: Callable[[float], bool], condition: str = "the condition") -> WindowVerdict:
    """Apply the window rule to ``points`` (any order; those at or before ``effective_at``
    are ignored). ``still_bad(value)``: the row's condition still holds for the value."""
    after = sorted((p for p in points if p.at > effective_at), key=lambda p: p.at)
    if not after:
        return WindowVerdict(False, f"no point published after the action took effect at "
                                    f"{_hms(effective_at)}", effective_at)
    run: list[Point] = []
    breaks: list[str] = []
    previous: Point | None = None
    for p in after:
        if previous is not None and (p.at - previous.at).total_seconds() > \
                window.max_gap_seconds:
            if run:
                breaks.append(f"gap of {(p.at - previous.at).total_seconds():.0f} s before "
                              f"{_hms(p.at)} (series restarted)")
            run = []
        previous = p
        if math.isnan(p.value):
            breaks.append(f"missing value at {_hms(p.at)}")
            run = []
        elif window.zero_is_reset and p.value == 0.0:
            breaks.append(f"reset reading 0 at {_hms(p.at)}")
            run = []
        elif still_bad(p.value):
            breaks.append(f"still {condition}: {p.value:g} at {_hms(p.at)}")
            run = []
        else:
            run.append(p)
    if not run:
        last = breaks[-1] if breaks else "no usable point"
        return WindowVerdict(False, f"no recovered point since the last break ({last})",
                             effective_at, (), tuple(after), tuple(breaks))
    span = (run[-1].at - run[0].at).total_seconds()
    if len(run) < window.min_points or span < window.min_seconds:
        return WindowVerdict(False, f"not enough evidence yet: {len(run)} of "
                                    f"{window.min_points} point(s), {span:.1f} of "
                                    f"{window.min_seconds:g} s no longer {condition}",
                             effective_at, tuple(run), tuple(after), tuple(breaks))
    return WindowVerdict(True, f"{len(run)} point(s) over {span:.1f} s no longer {condition}",
                         effective_at, tuple(run), tuple(after), tuple(breaks))


class RecoverySignal(Protocol):
    """The reading verification watches: ``read(since, now)`` returns the points published
    after ``since`` up to ``now`` (may include older ones: :func:`judge` filters),
    ``still_bad`` is the row's condition, ``condition`` its text."""

    condition: str

    def read(self, since: datetime, now: datetime) -> list[Point]: ...

    def still_bad(self, value: float) -> bool: ...


@dataclass
class SeriesSignal:
    """A published metric read back from the monitoring API: ``fetch(start, end)`` returns
    ``(timestamp, value)`` pairs of the series (one ``GetMetricData`` call per look)."""

    fetch: Callable[[datetime, datetime], Sequence[tuple[datetime, float]]]
    bad: Callable[[float], bool]
    condition: str

    def read(self, since: datetime, now: datetime) -> list[Point]:
        end = now + timedelta(seconds=2)
        return [Point(at, float(v)) for at, v in self.fetch(since - timedelta(seconds=1), end)]

    def still_bad(self, value: float) -> bool:
        return self.bad(value)


@dataclass
class SampledSignal:
    """A reading taken by the healer itself (a health probe, a database fact): every
    ``read`` samples once, stamps the value with the time it was taken and keeps it, so
    the window is the sequence of samples. ``sample`` returns ``(value or None, detail)``;
    None (not measured) adds no point."""

    sample: Callable[[], tuple[float | None, str]]
    bad: Callable[[float], bool]
    condition: str
    taken: list[Point] = field(default_factory=list)
    last_detail: str = ""

    def read(self, since: datetime, now: datetime) -> list[Point]:
        at = now
        value, self.last_detail = self.sample()
        if value is not None:
            self.taken.append(Point(at, float(value)))
        return [p for p in self.taken if p.at > since]

    def still_bad(self, value: float) -> bool:
        return self.bad(value)


def check_signal(check: Callable[[], tuple[bool, str]]) -> SampledSignal:
    """A ``check() -> (recovered, detail)`` as a signal: 1 recovered, 0 not."""
    def sample() -> tuple[float | None, str]:
        ok, detail = check()
        return (1.0 if ok else 0.0), detail

    return SampledSignal(sample, lambda v: v < 1.0, "failing the check")


@dataclass
class Verification:
    ok: bool
    detail: str
    verdict: WindowVerdict | None


def watch(signal: RecoverySignal, window: VerifyWindow, effective_at: datetime, *,
          timeout_s: float, interval_s: float,
          clock: Callable[[], datetime] = lambda: datetime.now(UTC),
          sleep: Callable[[float], None] = time.sleep) -> Verification:
    """Wait until ``effective_at``, then look at the window every ``interval_s`` until it
    verifies or ``timeout_s`` (counted from ``effective_at``) runs out. A read that fails
    (the monitoring API stops answering) is one more look without evidence."""
    wait = (effective_at - clock()).total_seconds()
    if wait > 0:
        sleep(wait)
    deadline = effective_at + timedelta(seconds=timeout_s)
    verdict: WindowVerdict | None = None
    detail = "not checked"
    while True:
        try:
            points = signal.read(effective_at, clock())
            verdict = judge(points, effective_at=effective_at, window=window,
                            still_bad=signal.still_bad, condition=signal.condition)
            detail = verdict.summary()
            extra = getattr(signal, "last_detail", "")
            if extra and not verdict.recovered:
                detail += f" (last reading: {extra})"
        except Exception as exc:  # keep looking: a flaky read is not a verdict
            detail = f"read failed: {type(exc).__name__}: {exc}"
        if (verdict is not None and verdict.recovered) or clock() >= deadline:
            return Verification(bool(verdict and verdict.recovered), detail, verdict)
        sleep(interval_s)
