"""Progress reports shared by disk and database replication, and the bandwidth limit.

A ``Progress`` tick says how far a round is (``done`` of ``total``), how much it actually
sent, how fast, and when it should end (ETA), so that the task log, the store's events
and the demo can show the same numbers. ``Throttle`` keeps the bytes sent under a rate:
replication must not saturate a customer's WAN link in the middle of a business day.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Progress:
    """One progress tick: ``done`` of ``total`` ``unit`` (bytes or rows) in ``round``.

    ``sent`` counts what was really transferred (``done`` counts what was examined);
    ``elapsed_s`` is the time since the round started; ``lag_s`` is the age of the
    target's last good state when known.
    """

    kind: str  # "disk" or "database"
    round: int
    done: int
    total: int
    unit: str
    item: str = ""
    sent: int = 0
    elapsed_s: float = 0.0
    lag_s: float | None = None

    @property
    def percent(self) -> float:
        return 100.0 if self.total <= 0 else min(100.0, 100.0 * self.done / self.total)

    @property
    def rate(self) -> float:
        """Units examined per second in this round (0 before any time has passed)."""
        return self.done / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def eta_s(self) -> float | None:
        """Seconds left at the current rate; None until there is a rate."""
        if self.done >= self.total:
            return 0.0
        rate = self.rate
        return (self.total - self.done) / rate if rate > 0 else None

    def as_dict(self) -> dict[str, object]:
        eta = self.eta_s
        return {
            "kind": self.kind, "round": self.round, "done": self.done, "total": self.total,
            "unit": self.unit, "item": self.item, "sent": self.sent,
            "percent": round(self.percent, 1), "elapsed_s": round(self.elapsed_s, 2),
            "rate_per_s": round(self.rate, 1), "eta_s": None if eta is None else round(eta, 1),
            "lag_s": None if self.lag_s is None else round(self.lag_s, 1),
        }


ProgressCallback = Callable[[Progress], None]


def noop(_: Progress) -> None:
    return None


@dataclass
class Throttle:
    """Keep the average send rate at or under ``bytes_per_s`` (None or 0: no limit).

    The average is taken since the throttle was created, which lets short bursts through
    after a pause (like a token bucket with a bucket as large as the round).
    """

    bytes_per_s: float | None = None
    sent: int = 0
    slept_s: float = 0.0
    started: float = field(default_factory=time.monotonic)
    sleep: Callable[[float], None] = time.sleep

    def __call__(self, nbytes: int) -> None:
        self.sent += nbytes
        if not self.bytes_per_s or self.bytes_per_s <= 0:
            return
        ahead = self.sent / self.bytes_per_s - (time.monotonic() - self.started)
        if ahead > 0:
            self.sleep(ahead)
            self.slept_s += ahead
