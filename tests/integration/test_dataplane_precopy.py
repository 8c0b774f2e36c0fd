"""Pre-copy convergence on a disk that a real writer process keeps changing."""

from __future__ import annotations

import random
import time
from pathlib import Path

import pytest

from migrationbox.replication.manifest import MIB, load_manifest, scan_tree
from migrationbox.replication.precopy import precopy
from migrationbox.replication.writeload import WriteLoad

pytestmark = pytest.mark.integration

BLOCK = 256 * 1024


def test_precopy_converges_under_write_load_and_reports_the_pause(tmp_path: Path):
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir()
    disk = src / "disk.img"
    disk.write_bytes(random.Random(1).randbytes(64 * MIB))
    states: list[str] = []
    with WriteLoad(disk, blocks_per_s=200, block_size=BLOCK) as load:
        before = disk.stat().st_mtime_ns
        deadline = time.monotonic() + 10
        while disk.stat().st_mtime_ns == before and time.monotonic() < deadline:
            time.sleep(0.02)  # the writer is running before the first round starts

        def pause() -> None:
            load.pause()
            states.append("paused")

        def resume() -> None:
            # while paused, the source must not change: the target equals it right now
            assert scan_tree(src, BLOCK).files == load_manifest(dst).files
            load.resume()
            states.append("resumed")

        result = precopy(src, dst, pause, resume, BLOCK, threshold_bytes=1 * MIB,
                         max_rounds=6)
    assert states == ["paused", "resumed"]
    summary = result.summary()
    dirty = summary["dirty_bytes_per_round"]
    assert dirty[0] == 64 * MIB  # the first live round copies everything
    assert len(dirty) >= 2 and dirty[-1] < dirty[0]  # later rounds only chase the writes
    assert result.verified, result.problems
    # the pause window is what the final round needed: the writes since the last live
    # round, a fraction of the full copy
    assert result.final_round is not None and 0 < result.final_round.bytes_sent < 16 * MIB
    assert 0 < result.downtime_s < result.live_rounds[0].seconds + 0.5


def test_changed_block_tracking_shrinks_the_pause_to_the_last_writes(tmp_path: Path):
    """With the writer's CBT log, later rounds read only dirtied blocks: the rounds
    converge under a load a scanning pre-copy cannot outrun, and the paused round is
    short, and the target still equals the paused source."""
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir()
    disk = src / "disk.img"
    disk.write_bytes(random.Random(2).randbytes(64 * MIB))
    with WriteLoad(disk, blocks_per_s=100, block_size=BLOCK, cbt_root=src) as load:
        deadline = time.monotonic() + 10
        while not (src / ".migrationbox/cbt.log").exists() and time.monotonic() < deadline:
            time.sleep(0.02)

        def resume() -> None:
            assert scan_tree(src, BLOCK).files == load_manifest(dst).files
            load.resume()

        result = precopy(src, dst, load.pause, resume, BLOCK, threshold_bytes=1 * MIB,
                         max_rounds=8, cbt=True)
    s = result.summary()
    assert result.live_rounds[0].baseline == "empty"  # the first round scans everything
    assert all(r.baseline == "cbt" for r in result.live_rounds[1:])
    assert s["final_baseline"] == "cbt"
    # a CBT round reads only logged blocks, not the disk (a scan round reads all 64 MiB)
    assert all(r.bytes_total < 32 * MIB for r in result.live_rounds[1:])
    assert result.final_round.bytes_total < 32 * MIB
    assert result.verified, result.problems
    assert result.downtime_s < result.live_rounds[0].seconds
