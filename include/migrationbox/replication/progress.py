"""Progress reports shared by disk and database replication."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Progress:
    """One progress tick: ``done`` of ``total`` ``unit`` (bytes or rows) in ``round``."""

    kind: str  # "disk" or "database"
    round: int
    done: int
    total: int
    unit: str
    item: str = ""

    @property
    def percent(self) -> float:
        return 100.0 if self.total <= 0 else min(100.0, 100.0 * self.done / self.total)


ProgressCallback = Callable[[Progress], None]


def noop(_: Progress) -> None:
    return None
