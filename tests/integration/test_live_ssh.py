"""Live migration of a source reached over SSH, against a real OpenSSH server on loopback.

The source folder is written by a real writer process the whole time. The pre-copy
rounds find what changed through block hashes computed on the source (no local
changed-block log exists for a remote folder), read only those blocks over SFTP, then
freeze the source with a command run on it through the same SSH connection
(``details.freeze_command``: here ``kill -STOP`` of the writer's process group), copy the
final delta and check it. Faults are real: sessions killed mid-round, a freeze command
that fails, a live SSH disk without one. The last test runs the replicate and cutover
phases on the lab with the live server's disk behind SSH and reads the downtime back
from the store.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest

from migrationbox.endpoints import Endpoint
from migrationbox.lab.sshd import SshServer, sshd_available
from migrationbox.phases.context import PhaseFailed
from migrationbox.phases.live import CommandFreeze, command_freeze, live_rounds, live_source
from migrationbox.replication.disk import ConvergencePolicy, verify
from migrationbox.replication.manifest import MIB, load_manifest, scan_tree
from migrationbox.replication.precopy import precopy
from migrationbox.replication.progress import Progress
from migrationbox.replication.source import SshTree, open_source
from migrationbox.replication.writeload import WriteLoad

pytestmark = pytest.mark.integration

_ok, _why = sshd_available()
if not _ok:
    pytest.skip(_why, allow_module_level=True)

BLOCK = 64 * 1024
ENDPOINT = "web-01/disk/root"


@pytest.fixture(scope="module")
def server(sshd_server: SshServer) -> SshServer:
    return sshd_server


@pytest.fixture
def conn(ssh_connection: Callable[[str], str]) -> str:
    return ssh_connection("live_ssh")


def _uri(server: SshServer, path: Path) -> str:
    return f"ssh://{server.host}:{server.port}{path}"


def _state(pid: int) -> str:
    """The process state letter from /proc (``T``: stopped)."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]


def _wait_state(pid: int, stopped: bool) -> bool:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if (_state(pid) == "T") == stopped:
            return True
        time.sleep(0.01)
    return False


def _freeze_details(pgid: int) -> dict[str, str]:
    return {"freeze_command": f"kill -STOP -- -{pgid}", "thaw_command": f"kill -CONT -- -{pgid}"}


def _endpoint(uri: str, details: dict[str, object]) -> Endpoint:
    return Endpoint("web-01", "disk", "root", uri, "file:///tmp/unused", dict(details))


def _running_writer(load: WriteLoad, path: Path) -> None:
    before = path.stat().st_mtime_ns
    deadline = time.monotonic() + 10
    while path.stat().st_mtime_ns == before and time.monotonic() < deadline:
        time.sleep(0.02)  # the writer runs before the first round starts
    assert load.proc is not None and path.stat().st_mtime_ns != before


def test_precopy_over_ssh_chases_a_writer_then_freezes_it_by_command(server: SshServer,
                                                                      conn: str,
                                                                      tmp_path: Path) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    (src / "var").mkdir(parents=True)
    disk = src / "disk.img"
    disk.write_bytes(random.Random(1).randbytes(8 * MIB))
    late = src / "var" / "late.bin"
    late.write_bytes(random.Random(2).randbytes(8 * BLOCK))
    seen: dict[str, object] = {}
    with WriteLoad(disk, blocks_per_s=10, block_size=BLOCK) as load:
        _running_writer(load, disk)
        assert load.proc is not None
        pid = load.proc.pid
        details = {"ssh_conn_id": conn, **_freeze_details(pid)}
        ep = _endpoint(_uri(server, src), details)
        tree = live_source(ep, "cutover")
        assert isinstance(tree, SshTree)
        fr = command_freeze(ep, tree, "cutover")

        def pause() -> None:
            # the last writes before the freeze: only the final delta can carry them
            with late.open("r+b") as fh:
                for block in (1, 6):
                    fh.seek(block * BLOCK + 10)
                    fh.write(b"written just before the freeze")
            fr.freeze()
            seen["stopped"] = _wait_state(pid, stopped=True)

        def resume() -> None:
            # while frozen, the source does not change: the target equals it right now
            seen["manifest_is_source"] = (scan_tree(src, BLOCK).files
                                          == load_manifest(dst).files)
            seen["verify_against_source"] = verify(tree, dst, BLOCK).ok

        with tree:
            result = precopy(tree, dst, pause, resume, BLOCK, threshold_bytes=256 * 1024,
                             max_rounds=6, cbt=True)
            frozen_image = disk.read_bytes()
        assert _state(pid) == "T"  # still frozen: the thaw is cutover's rollback's
        fr.thaw()  # on a new connection: the copy's was closed, as live_cutover does
        assert _wait_state(pid, stopped=False)
    assert seen == {"stopped": True, "manifest_is_source": True, "verify_against_source": True}
    assert frozen_image == (dst / "disk.img").read_bytes()
    assert late.read_bytes() == (dst / "var" / "late.bin").read_bytes()
    summary = result.summary()
    assert summary["method"] == "precopy+source-hash"
    total = result.live_rounds[0].bytes_total
    assert result.live_rounds[0].baseline == "empty"
    assert result.live_rounds[0].bytes_sent == total  # the first round copies everything
    for r in [*result.live_rounds[1:], result.final_round]:
        # later rounds read the whole source *on the source* but send only what changed:
        # the network carries the changed blocks plus 64 hex characters per block
        assert r.baseline == "manifest" and r.bytes_total == total
        assert r.bytes_sent < total
        assert r.wire_bytes < r.bytes_sent + 128 * 1024
    final = result.final_round
    assert final is not None and final.files_unstable == []
    assert final.blocks_sent >= 2 and final.files_changed >= 1  # late.bin's two blocks
    assert result.verified, result.problems
    assert result.downtime_s > 0 and summary["downtime_s"] == round(result.downtime_s, 3)
    assert [c["field"] for c in fr.log] == ["freeze_command", "thaw_command"]
    assert all(c["exit"] == 0 for c in fr.log)


def test_a_live_ssh_disk_needs_its_freeze_and_thaw_commands(server: SshServer, conn: str,
                                                             tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    with open_source(_uri(server, src), {"ssh_conn_id": conn}, name=ENDPOINT) as tree:
        assert isinstance(tree, SshTree)
        with pytest.raises(PhaseFailed, match=r"web-01/disk/root: details\.freeze_command"):
            command_freeze(_endpoint(_uri(server, src), {"ssh_conn_id": conn}), tree, "cutover")
        with pytest.raises(PhaseFailed, match=r"web-01/disk/root: details\.thaw_command"):
            command_freeze(_endpoint(_uri(server, src), {"ssh_conn_id": conn,
                                                         "freeze_command": "true"}),
                           tree, "cutover")

        # a freeze command that fails stops the cutover with its exit status and output,
        # and the thaw still runs (a failing freeze may have frozen part of the source)
        marker = tmp_path / "thawed"
        fr = command_freeze(_endpoint(_uri(server, src), {
            "ssh_conn_id": conn, "freeze_command": "echo no such volume >&2; exit 3",
            "thaw_command": f"touch {marker}"}), tree, "cutover")
        assert isinstance(fr, CommandFreeze)
        with pytest.raises(PhaseFailed, match=r"freeze_command .* exited 3 .*no such volume"):
            fr.freeze()
        fr.thaw()
        assert marker.exists()
        assert [(c["field"], c["exit"]) for c in fr.log] == [("freeze_command", 3),
                                                             ("thaw_command", 0)]


# paramiko's SFTP prefetch thread reports the killed socket on its own, as a thread exception
@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_precopy_round_whose_connection_drops_resumes_from_its_journal(
        server: SshServer, conn: str, tmp_path: Path) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir()
    rng = random.Random(5)
    (src / "vol0.img").write_bytes(rng.randbytes(64 * BLOCK))
    (src / "vol1.img").write_bytes(rng.randbytes(64 * BLOCK))
    dropped: list[int] = []

    def drop(p: Progress) -> None:
        # mid-way through vol1 in the first round, the network drops
        if p.item == "vol1.img" and p.sent >= 64 * BLOCK + 20 * BLOCK and not dropped:
            dropped.append(server.kill_sessions())

    with open_source(_uri(server, src), {"ssh_conn_id": conn}, name=ENDPOINT) as tree:
        assert isinstance(tree, SshTree)
        tree.read_batch_bytes = 4 * BLOCK  # a drop must find reads still to do
        result = precopy(tree, dst, lambda: None, lambda: None, BLOCK,
                         threshold_bytes=0, max_rounds=3, progress=drop)
        assert verify(tree, dst, BLOCK).ok
    assert dropped and dropped[0] > 0
    assert len(result.resumed) == 1 and "round 1" in result.resumed[0]
    assert ENDPOINT in result.resumed[0]
    first = result.live_rounds[0]
    assert first.baseline == "resume"  # the second attempt of round 1 used the journal
    assert first.blocks_recovered >= 64  # vol0 was done before the drop: not sent again
    assert first.bytes_sent <= 64 * BLOCK
    assert result.verified, result.problems
    for name in ("vol0.img", "vol1.img"):
        assert (src / name).read_bytes() == (dst / name).read_bytes()


def test_replicate_phase_live_rounds_over_ssh_send_only_changes(server: SshServer, conn: str,
                                                                tmp_path: Path) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir()
    disk = src / "disk.img"
    disk.write_bytes(random.Random(7).randbytes(4 * MIB))
    policy = ConvergencePolicy(delta_pct=0, delta_bytes=0, max_rounds=4)
    with open_source(_uri(server, src), {"ssh_conn_id": conn}, name=ENDPOINT) as tree:
        first = live_rounds(tree, dst, BLOCK, policy)
        assert first["method"] == "precopy+source-hash"
        assert first["baselines"][0] == "empty" and first["dirty_bytes_per_round"][0] == 4 * MIB
        assert first["verify"]["ok"] and first["cbt_log_bytes"] is None
        for offset in (0, 3 * MIB):
            with disk.open("r+b") as fh:
                fh.seek(offset)
                fh.write(b"x" * 100)
        again = live_rounds(tree, dst, BLOCK, policy)
    assert again["dirty_bytes_per_round"][0] == 2 * BLOCK  # the two changed blocks only
    assert again["dirty_bytes_per_round"][1] == 0
    assert again["wire_bytes"] < 2 * BLOCK + 64 * 1024
    assert load_manifest(dst).files == scan_tree(src, BLOCK).files


# -- the phases on the lab, with the live server's disk behind SSH ------------------------

LIVE = "web-01"


@pytest.fixture
def live_plane(aws_emulator, tmp_path: Path):
    from test_dataplane_live import live_dataplane

    with live_dataplane(tmp_path, prefix="ls") as dp:
        yield dp


def test_live_server_over_ssh_through_replicate_and_cutover_with_downtime_stored(
        live_plane, server: SshServer, conn: str, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    from test_dataplane_live import stored_downtimes

    from migrationbox.lab.endpoints import by_server
    from migrationbox.phases import cutover, replicate

    dp = live_plane
    disk_ep = by_server(dp.endpoints, LIVE, "disk")[0]
    src = disk_ep.source_path
    image = src / "var/lib/app/live.img"
    image.write_bytes(random.Random(5).randbytes(4 * MIB))
    options = {"cutover": {"latency_floor_ms": 2000}}
    with WriteLoad(image, blocks_per_s=20, block_size=BLOCK) as load:
        _running_writer(load, image)
        assert load.proc is not None
        ssh_ep = replace(disk_ep, source_uri=_uri(server, src),
                         details={**disk_ep.details, "ssh_conn_id": conn,
                                  **_freeze_details(load.proc.pid)})
        endpoints = [ssh_ep if ep is disk_ep else ep for ep in dp.endpoints]

        rep = replicate.run(dp.ctx(endpoints=endpoints))
        live_disk = rep.details["servers"][LIVE]["disks"]["root"]
        assert live_disk["live"] and live_disk["method"] == "precopy+source-hash"
        assert live_disk["baselines"][0] == "empty" and live_disk["verify"]["ok"]
        assert live_disk["wire_bytes"] > 0
        assert _state(load.proc.pid) != "T"  # never stopped during replicate

        # without a way to freeze it, an SSH live disk is refused before traffic moves
        bare = [replace(ep, details={k: v for k, v in ep.details.items()
                                     if k not in ("freeze_command", "thaw_command")})
                if ep is ssh_ep else ep for ep in endpoints]
        with pytest.raises(PhaseFailed, match=r"web-01/disk/root: details\.freeze_command"):
            cutover.run(dp.ctx(options=options, endpoints=bare))
        assert dp.weights(LIVE) != {"source": 0, "target": 100}

        shift = cutover.run(dp.ctx(options=options, endpoints=endpoints))
        assert _state(load.proc.pid) == "T"  # frozen through SSH; stays so: the target rules
        assert image.read_bytes() == (disk_ep.target_path / "var/lib/app/live.img").read_bytes()
        assert dp.weights(LIVE) == {"source": 0, "target": 100}

    info = shift.details["live"]["servers"][LIVE]
    root = info["disks"]["root"]
    assert root["method"] == "precopy+source-hash" and root["verified"]
    assert [c["field"] for c in root["freeze"]] == ["freeze_command"]
    assert info["serving_check"] == "HTTP 2xx from the target"
    assert info["downtime_s"] > 0 and info["frozen_at"] < info["serving_at"]
    assert info["downtime_s"] >= root["downtime_s"]

    with stored_downtimes(dp, shift, tmp_path, monkeypatch) as stored:
        assert set(stored) == {LIVE}
    assert stored[LIVE]["downtime_s"] == info["downtime_s"]
