"""A steady write load on a lab disk: the "changing disk" pre-copy has to chase.

Run as its own process (``python -m migrationbox.replication.writeload FILE RATE``): it
overwrites random blocks of ``FILE`` at ``RATE`` blocks per second, with fsync, until
it is terminated. Pausing it with SIGSTOP and resuming it with SIGCONT is how the lab
quiesces "the source server" for the final pre-copy round, the way a hypervisor pauses
a VM.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path


def write_forever(path: Path, blocks_per_s: float, block_size: int, seed: int = 3,
                  cbt_root: Path | None = None) -> None:
    """Random block writes; with ``cbt_root`` (the disk's tree) each write is logged to
    its changed-block-tracking log first (see ``cbt``)."""
    from migrationbox.replication.cbt import mark

    rng = random.Random(seed)
    rel = str(path.relative_to(cbt_root)) if cbt_root is not None else ""
    size = path.stat().st_size
    nblocks = max(1, size // block_size)
    interval = 1.0 / blocks_per_s
    next_at = time.monotonic()
    with path.open("r+b") as fh:
        while True:
            offset = rng.randrange(nblocks) * block_size
            data = rng.randbytes(min(block_size, 64 * 1024))
            if cbt_root is not None:
                mark(cbt_root, rel, offset, len(data))
            fh.seek(offset)
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
            next_at += interval
            delay = next_at - time.monotonic()
            if delay > 0:
                time.sleep(delay)


@dataclass
class WriteLoad:
    """The writer process: start, pause (SIGSTOP), resume (SIGCONT), stop."""

    path: Path
    blocks_per_s: float
    block_size: int
    cbt_root: Path | None = None
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> WriteLoad:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "migrationbox.replication.writeload", str(self.path),
             str(self.blocks_per_s), str(self.block_size), str(self.cbt_root or "")],
            start_new_session=True)
        return self

    def pause(self) -> None:
        if self.proc is not None:
            os.killpg(self.proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        if self.proc is not None:
            os.killpg(self.proc.pid, signal.SIGCONT)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGCONT)
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)

    def __enter__(self) -> WriteLoad:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


if __name__ == "__main__":  # pragma: no cover - exercised through WriteLoad
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    write_forever(Path(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3]),
                  cbt_root=Path(sys.argv[4]) if len(sys.argv) > 4 and sys.argv[4] else None)
