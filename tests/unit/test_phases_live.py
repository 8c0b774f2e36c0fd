"""The live path's refusals and its pre-copy rounds on a real folder (no cloud)."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from migrationbox.endpoints import Endpoint
from migrationbox.phases.context import PhaseFailed
from migrationbox.phases.live import live_rounds, local_source, source_freeze
from migrationbox.replication.cbt import mark
from migrationbox.replication.disk import ConvergencePolicy
from migrationbox.replication.manifest import MIB, load_manifest, scan_tree

BLOCK = 64 * 1024


def _disk(uri: str, **details) -> Endpoint:
    return Endpoint("web-01", "disk", "root", uri, "file:///tmp/unused", details)


def test_the_local_change_log_path_refuses_a_source_that_is_not_a_local_folder():
    """Only a file:// source has a changed-block log here; an ssh:// one takes the
    source-hash path (live_source), and anything else is refused by endpoint and field."""
    for uri in ("ssh://app@10.0.0.5/srv/data", "s3://bucket/disk", ""):
        ep = _disk(uri, ssh_conn_id="lab_ssh")
        with pytest.raises(PhaseFailed, match=r"web-01/disk/root: source_uri: .*file://"):
            local_source(ep, "replicate")


@pytest.mark.parametrize("bad", [None, "123", True, 0, -4])
def test_a_missing_or_bad_freeze_group_is_refused_by_endpoint_and_field(bad):
    details = {} if bad is None else {"freeze_pgid": bad}
    with pytest.raises(PhaseFailed, match=r"web-01/disk/root: details\.freeze_pgid"):
        source_freeze(_disk("file:///srv", **details), "cutover")


def test_freeze_stops_and_thaw_resumes_the_process_group():
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"],
                            start_new_session=True)
    try:
        fr = source_freeze(_disk("file:///srv", freeze_pgid=proc.pid), "cutover")

        def state(stopped: bool) -> bool:
            """Whether the process reached the state (signals land asynchronously)."""
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                letter = Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
                if (letter == "T") == stopped:
                    return True
                time.sleep(0.01)
            return False

        fr.freeze()
        assert state(stopped=True) and fr.frozen_wall
        fr.thaw()
        assert state(stopped=False)
    finally:
        os.killpg(proc.pid, signal.SIGCONT)
        proc.kill()
        proc.wait()


def test_live_rounds_scan_once_then_copy_only_the_logged_blocks(tmp_path: Path):
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir()
    disk = src / "disk.img"
    disk.write_bytes(random.Random(7).randbytes(4 * MIB))
    policy = ConvergencePolicy(delta_pct=0, delta_bytes=0, max_rounds=4)
    first = live_rounds(src, dst, BLOCK, policy)
    assert first["baselines"][0] == "empty"
    assert first["dirty_bytes_per_round"][0] == 4 * MIB
    assert first["verify"]["ok"]
    # two writes, logged as a CBT-keeping writer logs them: only those blocks travel
    for offset in (0, 3 * MIB):
        mark(src, "disk.img", offset, 100)
        with disk.open("r+b") as fh:
            fh.seek(offset)
            fh.write(b"x" * 100)
    again = live_rounds(src, dst, BLOCK, policy)
    assert again["baselines"][0] == "manifest"  # a scan round finds the writes first
    assert again["dirty_bytes_per_round"][0] == 2 * BLOCK
    assert again["baselines"][1:] and set(again["baselines"][1:]) == {"cbt"}
    assert load_manifest(dst).files == scan_tree(src, BLOCK).files
