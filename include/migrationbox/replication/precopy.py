"""Pre-copy convergence for live migration: copy while the source keeps changing.

Rounds run against the live source and copy the blocks that changed since the target's
manifest (its *dirty* blocks). When a round's dirty bytes fall to the threshold — or the
rounds stop shrinking, or ``max_rounds`` is reached — the source is paused (``pause()``:
in the lab, SIGSTOP of the writer process; over SSH, a freeze command run on the source),
one last round copies what is left, and the source is resumed. The time between pause
and resume is the downtime, and it is reported as such.

How a round finds the dirty blocks depends on where the source is (``PrecopyRounds``):

* a local folder, ``cbt=False``: each round reads and hashes the whole source (``scan``);
* a local folder, ``cbt=True``: after the first round, the source's changed-block-tracking
  log (``cbt``) names the blocks written since the round before, and only those are read
  (``cbt``), so the pause window is the time to copy the last round's writes rather than
  the time to read the disk. Rounds fall back to a scan when the log cannot be used (no
  trustworthy manifest, a file changed size);
* a source reached over SSH (``source.SshTree``): there is no bitmap to read remotely, so
  every round has the source hash its blocks *where the data lives*
  (``remote_hash``: 64 hex characters per block cross the network) and only the blocks
  whose hash differs from the manifest are read over SFTP (``source-hash``). The source
  still reads its disk each round, but the network carries only the changes. A round
  whose connection drops is run again (up to ``reconnects`` times) and resumes from its
  journal: the blocks it already wrote and checkpointed are not sent again.

The final round's manifest describes the source as it was while paused, which is the
state the target boots from. Over SSH that holds because the final round's hashes were
computed on the paused source and every block read was hashed again on arrival; a file
that still changed during that round (``RoundStats.files_unstable``) means the freeze
did not stop its writer, and the result is not ``verified``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from migrationbox.replication.cbt import DirtyLog, blocks_of, copy_dirty
from migrationbox.replication.disk import (
    RoundStats,
    Source,
    _local_folder,
    replicate_round,
    verify,
)
from migrationbox.replication.manifest import DEFAULT_BLOCK_SIZE, MIB
from migrationbox.replication.progress import ProgressCallback
from migrationbox.replication.source import SourceConnectionLost, SourceUnreachable

#: seconds to wait before the n-th new attempt of a round whose connection dropped
RECONNECT_BACKOFF_S = (0.5, 1.0, 2.0, 4.0)


@dataclass
class PrecopyRounds:
    """One pre-copy round at a time against one source (module docstring: how each kind
    of source finds its dirty blocks). Shared by ``precopy`` and the replicate phase's
    live rounds, which must read the source the same way."""

    source: Source
    target: Path
    block_size: int = DEFAULT_BLOCK_SIZE
    cbt: bool = False
    progress: ProgressCallback | None = None
    #: new attempts of a round after its SSH connection dropped (it resumes from its journal)
    reconnects: int = 2
    #: one line per round that was attempted again, with the error that ended the attempt
    resumed: list[str] = field(default_factory=list)
    folder: Path | None = field(init=False, default=None)  # a local source's folder
    _log: DirtyLog | None = field(init=False, default=None)
    #: the change log's size when each round started
    _starts: list[int] = field(init=False, default_factory=list)

    def __post_init__(self) -> None:
        self.target = Path(self.target)
        self.folder = _local_folder(self.source)
        if self.cbt and self.folder is not None:
            self._log = DirtyLog(self.folder)

    @property
    def method(self) -> str:
        """``precopy+cbt`` (a local change log), ``precopy+source-hash`` (hashes computed on
        an SSH source) or ``precopy+scan`` (a local folder read whole each round)."""
        if self.folder is None:
            return "precopy+source-hash"
        return "precopy+cbt" if self._log is not None else "precopy+scan"

    @property
    def log_bytes(self) -> int | None:
        return self._log.size() if self._log is not None else None

    def run(self, round_no: int, bandwidth_bytes_per_s: float | None = None) -> RoundStats:
        if self._log is not None:
            self._starts.append(self._log.size())
            if len(self._starts) > 1:
                # the writes logged during the last two rounds, not just the last one: a
                # write is logged a moment before it lands (see ``cbt.DirtyLog``)
                starts = self._starts
                lo = starts[-3] if len(starts) > 2 else starts[-2]
                dirty = blocks_of(self._log.read(lo, starts[-1]), self.block_size)
                stats = copy_dirty(self.folder, self.target, dirty, round_no, self.block_size)
                if stats is not None:
                    return stats
        if self.folder is not None:
            return replicate_round(self.folder, self.target, round_no, self.block_size,
                                   self.progress, bandwidth_bytes_per_s=bandwidth_bytes_per_s)
        attempt = 0
        while True:
            try:
                return replicate_round(self.source, self.target, round_no, self.block_size,
                                       self.progress,
                                       bandwidth_bytes_per_s=bandwidth_bytes_per_s)
            except (SourceConnectionLost, SourceUnreachable) as exc:
                if attempt >= self.reconnects:
                    raise
                self.resumed.append(f"round {round_no}, attempt {attempt + 1}: {exc}")
                time.sleep(RECONNECT_BACKOFF_S[min(attempt, len(RECONNECT_BACKOFF_S) - 1)])
                attempt += 1


@dataclass
class PrecopyResult:
    live_rounds: list[RoundStats] = field(default_factory=list)
    final_round: RoundStats | None = None
    downtime_s: float = 0.0
    stop_reason: str = ""
    verified: bool = False
    problems: list[str] = field(default_factory=list)
    method: str = ""
    #: rounds attempted again after a dropped connection (``PrecopyRounds.resumed``)
    resumed: list[str] = field(default_factory=list)

    @property
    def wire_bytes(self) -> int:
        rounds = self.live_rounds + ([self.final_round] if self.final_round else [])
        return sum(r.wire_bytes for r in rounds)

    def summary(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "live_rounds": len(self.live_rounds),
            "dirty_bytes_per_round": [r.bytes_sent for r in self.live_rounds],
            "round_seconds": [r.seconds for r in self.live_rounds],
            # files read while they changed (an SSH source's writers; read again after)
            "unstable_files_per_round": [len(r.files_unstable) for r in self.live_rounds],
            "final_bytes": self.final_round.bytes_sent if self.final_round else None,
            "final_baseline": self.final_round.baseline if self.final_round else None,
            "downtime_s": round(self.downtime_s, 3),
            "stop_reason": self.stop_reason,
            "verified": self.verified,
            "problems": self.problems[:10],
            "wire_bytes": self.wire_bytes,
            "resumed": self.resumed[:10],
        }


def precopy(
    source: Source,
    target: Path,
    pause: Callable[[], None],
    resume: Callable[[], None],
    block_size: int = DEFAULT_BLOCK_SIZE,
    threshold_bytes: int = 4 * MIB,
    max_rounds: int = 10,
    progress: ProgressCallback | None = None,
    bandwidth_bytes_per_s: float | None = None,
    cbt: bool = False,
    reconnects: int = 2,
) -> PrecopyResult:
    """Live rounds until the delta is small, then a paused final round (module docstring).

    ``source`` is a local folder or a ``SourceTree`` (an SSH source: ``cbt`` does not
    apply, the source hashes its blocks itself)."""
    rounds = PrecopyRounds(source, Path(target), block_size, cbt, progress, reconnects)
    result = PrecopyResult(method=rounds.method, resumed=rounds.resumed)
    for n in range(1, max_rounds + 1):
        stats = rounds.run(n, bandwidth_bytes_per_s)
        result.live_rounds.append(stats)
        # a file still being written is expected to read unstable while live: what it
        # changes is copied by the next round, or by the final one under the freeze
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
        result.final_round = rounds.run(len(result.live_rounds) + 1, None)
    finally:
        resume()
        result.downtime_s = time.monotonic() - t0
    # after the source runs again: the final round's manifest holds the hashes it read
    # from the paused source, so target == manifest proves target == paused source
    check = verify(None, Path(target), block_size)
    result.verified, result.problems = check.ok, check.problems
    if result.final_round.files_unstable:
        result.verified = False
        result.problems.insert(0, f"{result.final_round.files_unstable[:5]} changed at the "
                                  "source during the final round: the pause did not stop "
                                  "their writer")
    return result
