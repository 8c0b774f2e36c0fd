"""Faults against replication, with real processes: kill -9 mid-round, a damaged block.

Replication copies between folders and does not talk to the cloud emulator, so the
"crash in the middle of a round" is a real ``kill -9`` of the process doing the copy.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from migrationbox.replication.disk import replicate_round, verify
from migrationbox.replication.journal import read_journal
from migrationbox.replication.manifest import MIB, journal_path, load_manifest

pytestmark = pytest.mark.integration

BLOCK = 256 * 1024

COPY = """
import sys
from pathlib import Path
from migrationbox.replication.disk import replicate_round
replicate_round(Path(sys.argv[1]), Path(sys.argv[2]), 1, int(sys.argv[3]),
                bandwidth_bytes_per_s=float(sys.argv[4]), checkpoint_bytes=int(sys.argv[5]))
"""


def _source(root: Path, files: int, mib_each: int) -> int:
    rng = random.Random(11)
    root.mkdir(parents=True)
    for i in range(files):
        (root / f"vol{i}.img").write_bytes(rng.randbytes(mib_each * MIB))
    (root / "etc").mkdir()
    (root / "etc/fstab").write_text("/dev/vda1 / ext4 defaults 0 1\n")
    return files * mib_each * MIB + len("/dev/vda1 / ext4 defaults 0 1\n")


def test_kill_mid_round_then_resume_sends_only_what_was_not_verified(tmp_path: Path):
    src, dst = tmp_path / "src", tmp_path / "dst"
    total = _source(src, files=3, mib_each=8)
    proc = subprocess.Popen(
        [sys.executable, "-c", COPY, str(src), str(dst), str(BLOCK), str(12 * MIB), str(MIB)],
        start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            state = read_journal(dst) if journal_path(dst).exists() else None
            if state and state.done and any(state.checkpoints.values()):
                break  # one file finished, the next one part-way
            assert proc.poll() is None, proc.stderr.read().decode()
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(10)
    assert proc.returncode == -signal.SIGKILL
    assert load_manifest(dst) is None  # the interrupted round committed nothing
    journal = read_journal(dst)
    assert journal is not None
    journaled = (sum(e.size for e in journal.done.values())
                 + sum(len(h) * BLOCK for r, h in journal.checkpoints.items()
                       if r not in journal.done))
    assert 0 < journaled < total

    resumed = replicate_round(src, dst, 2, BLOCK)
    assert resumed.baseline == "resume"
    assert resumed.blocks_recovered * BLOCK >= journaled
    # verified blocks are not sent again: at most what the journal did not cover
    assert resumed.bytes_sent <= total - journaled
    assert not journal_path(dst).exists()
    assert verify(src, dst).ok  # final checksums match, block by block
    again = replicate_round(src, dst, 3, BLOCK)
    assert again.bytes_sent == 0 and again.baseline == "manifest"


def test_killed_twice_still_converges_without_resending(tmp_path: Path):
    """A resume that is itself killed resumes again from the union of both journals."""
    src, dst = tmp_path / "src", tmp_path / "dst"
    total = _source(src, files=2, mib_each=8)
    sent_before = 0
    previous = ""  # the started_at of the journal the attempt before left
    for _attempt in range(2):
        proc = subprocess.Popen(
            [sys.executable, "-c", COPY, str(src), str(dst), str(BLOCK), str(6 * MIB),
             str(MIB)], start_new_session=True, stderr=subprocess.PIPE)
        try:
            # killed once this attempt's own journal shows progress (not after a fixed
            # time: on a busy machine the interpreter may not even have started by then)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                state = read_journal(dst) if journal_path(dst).exists() else None
                if state and state.started_at != previous and (
                        state.done or any(state.checkpoints.values())):
                    previous = state.started_at
                    break
                assert proc.poll() is None, proc.stderr.read().decode()
                time.sleep(0.02)
            os.killpg(proc.pid, signal.SIGKILL)
        finally:
            proc.wait(10)
        assert journal_path(dst).exists() and previous
    state = read_journal(dst)
    sent_before = (sum(e.size for e in state.done.values())
                   + sum(len(h) * BLOCK for r, h in state.checkpoints.items()
                         if r not in state.done))
    resumed = replicate_round(src, dst, 3, BLOCK)
    assert resumed.baseline == "resume"
    assert resumed.bytes_sent <= total - sent_before
    assert verify(src, dst).ok


def test_corrupt_block_on_target_is_detected_and_repaired(tmp_path: Path):
    src, dst = tmp_path / "src", tmp_path / "dst"
    _source(src, files=1, mib_each=4)
    replicate_round(src, dst, 1, BLOCK)
    with (dst / "vol0.img").open("r+b") as fh:
        fh.seek(5 * BLOCK + 100)
        fh.write(b"\x00" * 16)
    check = verify(src, dst)
    assert not check.ok
    assert any("vol0.img: blocks [5] differ from manifest" in p for p in check.problems)
    repair = replicate_round(src, dst, 2, BLOCK, rescan=True)
    assert repair.blocks_sent == 1 and repair.bytes_sent == BLOCK
    assert verify(src, dst).ok
