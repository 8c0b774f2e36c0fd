"""Pre-copy convergence for live migration: copy while the source keeps changing.

Rounds run against the live source: each reads the whole source, and the blocks whose
hash changed since the target's manifest are the round's *dirty* blocks (the lab has no
hypervisor changed-block tracking, so hashing is how dirt is found; the manifest makes
that exact). When a round's dirty bytes fall to the threshold — or the rounds stop
shrinking, or ``max_rounds`` is reached — the source is paused (``pause()``: in the lab,
SIGSTOP of the writer process), one last round copies what is left, and the source is
resumed. The time between pause and resume is the downtime, and it is reported as such.

With ``cbt=True`` the source's changed-block-tracking log (``cbt``) replaces the scan
after the first round: each later round — including the paused one — reads and sends
only the blocks written since the previous round, so the pause window is the time to
copy the last round's writes rather than the time to read the disk. Rounds fall back to
a scan when the log cannot be used (no trustworthy manifest, a file changed size).

The final round's manifest describes the source as it was while paused, which is the
state the target boots from.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from migrationbox.replication.cbt import DirtyLog, blocks_of, copy_dirty
from migrationbox.replication.disk import RoundStats, replicate_round, verify
from migrationbox.replication.manifest import DEFAULT_BLOCK_SIZE, MIB
from migrationbox.replication.progress import ProgressCallback


@dataclass
class PrecopyResult:
    live_rounds: list[RoundStats] = field(default_factory=list)
    final_round: RoundStats | None = None
    downtime_s: float = 0.0
    stop_reason: str = ""
    verified: bool = False
    problems: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        return {
            "live_rounds": len(self.live_rounds),
            "dirty_bytes_per_round": [r.bytes_sent for r in self.live_rounds],
            "round_seconds": [r.seconds for r in self.live_rounds],
            "final_bytes": self.final_round.bytes_sent if self.final_round else None,
            "final_baseline": self.final_round.baseline if self.final_round else None,
            "downtime_s": round(self.downtime_s, 3),
            "stop_reason": self.stop_reason,
            "verified": self.verified,
            "problems": self.problems[:10],
        }


def precopy(
    source: Path,
    target: Path,
    pause: Callable[[], None],
    resume: Callable[[], None],
    block_size: int = DEFAULT_BLOCK_SIZE,
    threshold_bytes: int = 4 * MIB,
    max_rounds: int = 10,
    progress: ProgressCallback | None = None,
    bandwidth_bytes_per_s: float | None = None,
    cbt: bool = False,
) -> PrecopyResult:
    """Live rounds until the delta is small, then a paused final round (module docstring)."""
    result = PrecopyResult()
    log = DirtyLog(Path(source)) if cbt else None
    starts: list[int] = []  # the log's size when each round started

    def one_round(n: int, throttle: float | None) -> RoundStats:
        if log is not None:
            starts.append(log.size())
            if len(starts) > 1:
                # the writes logged during the last two rounds, not just the last one: a
                # write is logged a moment before it lands (see ``cbt.DirtyLog``)
                lo = starts[-3] if len(starts) > 2 else starts[-2]
                dirty = blocks_of(log.read(lo, starts[-1]), block_size)
                stats = copy_dirty(source, target, dirty, n, block_size)
                if stats is not None:
                    return stats
        return replicate_round(source, target, n, block_size, progress,
                               bandwidth_bytes_per_s=throttle)

    for n in range(1, max_rounds + 1):
        stats = one_round(n, bandwidth_bytes_per_s)
        result.live_rounds.append(stats)
        if stats.bytes_sent <= threshold_bytes:
            result.stop_reason = f"delta {stats.bytes_sent} B <= threshold {threshold_bytes} B"
            break
        prev = result.live_rounds[-2].bytes_sent if len(result.live_rounds) > 1 else None
        if prev is not None and stats.bytes_sent >= prev:
            result.stop_reason = ("not converging: the source dirties blocks as fast as we "
                                  f"copy them ({prev} B then {stats.bytes_sent} B)")
            break
    else:
        result.stop_reason = f"max_rounds {max_rounds} reached"
    pause()
    t0 = time.monotonic()
    try:
        result.final_round = one_round(len(result.live_rounds) + 1, None)
    finally:
        resume()
        result.downtime_s = time.monotonic() - t0
    # after the source runs again: the final round's manifest holds the hashes it read
    # from the paused source, so target == manifest proves target == paused source
    check = verify(None, target, block_size)
    result.verified, result.problems = check.ok, check.problems
    return result
