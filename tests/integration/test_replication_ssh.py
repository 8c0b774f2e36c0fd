"""Agentless replication from a real OpenSSH server on loopback, and its faults.

The source folder is read through the Airflow SSH provider's hook with an Airflow
connection (``AIRFLOW_CONN_<ID>``) holding the key and the pinned host key; block hashes
are computed on the source by ``python3`` there. Faults are real: a closed port, a key
the server does not know, a server whose host key changed, a file rewritten while it is
read, sessions killed and the server stopped in the middle of a round.
"""

from __future__ import annotations

import json
import os
import random
import socket
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from migrationbox.errors import ConfigurationError, ExternalServiceError, InputError
from migrationbox.lab.sshd import SshServer, sshd_available
from migrationbox.replication.disk import (
    ConvergencePolicy,
    SourceVanished,
    replicate_round,
    replicate_tree,
    verify,
)
from migrationbox.replication.journal import read_journal
from migrationbox.replication.manifest import load_manifest
from migrationbox.replication.progress import Progress
from migrationbox.replication.source import (
    HostKeyRefused,
    SourceAuthRefused,
    SourceCommandFailed,
    SourceConnectionLost,
    SourceUnreachable,
    SourceUriError,
    SshTree,
    open_source,
)

pytestmark = pytest.mark.integration

_ok, _why = sshd_available()
if not _ok:
    pytest.skip(_why, allow_module_level=True)

BLOCK = 64 * 1024
ENDPOINT = "web-01/disk/data"


@pytest.fixture(scope="module")
def server(sshd_server: SshServer) -> SshServer:
    return sshd_server


@pytest.fixture
def conn(ssh_connection: Callable[[str], str]) -> str:
    return ssh_connection("src_ssh")


def _tree(root: Path, seed: int = 3) -> Path:
    rng = random.Random(seed)
    (root / "etc" / "app").mkdir(parents=True)
    (root / "var").mkdir()
    (root / "disk.img").write_bytes(rng.randbytes(40 * BLOCK + 17))
    (root / "etc" / "app" / "app.conf").write_text("port = 8080\n")
    (root / "var" / "small.bin").write_bytes(rng.randbytes(3 * BLOCK))
    (root / "etc" / "app" / "secret").write_text("s3cret\n")
    os.chmod(root / "etc" / "app" / "secret", 0o600)
    os.symlink("../disk.img", root / "var" / "disk-link")
    return root


def _uri(server: SshServer, path: Path) -> str:
    return f"ssh://{server.host}:{server.port}{path}"


def _same_trees(a: Path, b: Path) -> None:
    names = sorted(p.relative_to(a).as_posix() for p in a.rglob("*"))
    assert names == sorted(p.relative_to(b).as_posix() for p in b.rglob("*")
                           if ".migrationbox" not in p.parts)
    for name in names:
        pa, pb = a / name, b / name
        if pa.is_symlink():
            assert os.readlink(pa) == os.readlink(pb)
        elif pa.is_file():
            assert pa.read_bytes() == pb.read_bytes(), name
            assert pa.stat().st_mode == pb.stat().st_mode, name


def test_full_then_incremental_reads_only_changed_blocks(server: SshServer, conn: str,
                                                         tmp_path: Path) -> None:
    src, dst = _tree(tmp_path / "src"), tmp_path / "dst"
    with open_source(_uri(server, src), {"ssh_conn_id": conn}, name=ENDPOINT) as tree:
        assert isinstance(tree, SshTree)
        full = replicate_round(tree, dst, 1, BLOCK)
        _same_trees(src, dst)
        total = full.bytes_total
        assert full.bytes_sent == total and full.baseline == "empty"
        # what crossed the wire is the data plus SSH's framing and the hash lists
        assert total <= full.wire_bytes < total * 1.2

        # change two blocks, delete a file, add one, change a mode
        with (src / "disk.img").open("r+b") as fh:
            for block in (5, 31):
                fh.seek(block * BLOCK + 100)
                fh.write(b"changed!")
        (src / "var" / "small.bin").unlink()
        (src / "var" / "new.txt").write_text("new\n")
        os.chmod(src / "etc" / "app" / "app.conf", 0o640)
        inc = replicate_round(tree, dst, 2, BLOCK)
        assert inc.baseline == "manifest"
        assert inc.blocks_sent == 3  # two blocks of disk.img, the one block of new.txt
        assert inc.files_deleted == 1
        # unchanged blocks never crossed the network: the hashes of 44 blocks did
        assert inc.wire_bytes < inc.bytes_sent + 64 * 1024
        _same_trees(src, dst)
        check = verify(tree, dst, BLOCK)
        assert check.ok, check.problems
        assert check.source_matches_target is True

        # the check compares source-side hashes with the target: a damaged block is named
        with (dst / "disk.img").open("r+b") as fh:
            fh.seek(7 * BLOCK)
            fh.write(b"rot")
        damaged = verify(tree, dst, BLOCK)
        assert not damaged.ok
        assert any("disk.img: blocks [7]" in p and "source" in p for p in damaged.problems)


def test_uri_user_host_and_port_override_the_connection(server: SshServer, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    conn = server.airflow_connection()
    conn.update(host="unreachable.invalid", port=1, login="nobody")
    monkeypatch.setenv("AIRFLOW_CONN_SHARED_SSH", json.dumps(conn))
    src = _tree(tmp_path / "src")
    uri = f"ssh://{server.user}@{server.host}:{server.port}{src}"
    with open_source(uri, {"ssh_conn_id": "shared_ssh"}, name=ENDPOINT) as tree:
        info = tree.check()
        assert info["server"] == f"{server.user}@127.0.0.1:{server.port}"
        assert (info["path"], info["is_dir"], info["readable"]) == (str(src), True, True)
        assert info["python"].startswith("3.")
        assert tree.total_bytes() == sum(p.stat().st_size for p in src.rglob("*")
                                         if p.is_file() and not p.is_symlink())
        replicate_round(tree, tmp_path / "dst", 1, BLOCK)
    _same_trees(src, tmp_path / "dst")


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_unreachable_host_names_endpoint_and_server_and_touches_nothing(
        server: SshServer, conn: str, tmp_path: Path) -> None:
    port = _closed_port()
    dst = tmp_path / "dst"
    with open_source(f"ssh://127.0.0.1:{port}{tmp_path}", {"ssh_conn_id": conn},
                     name=ENDPOINT) as tree, pytest.raises(SourceUnreachable) as err:
        replicate_round(tree, dst, 1, BLOCK)
    assert ENDPOINT in str(err.value) and f"127.0.0.1:{port}" in str(err.value)
    assert isinstance(err.value, ExternalServiceError)
    assert not dst.exists()


def test_wrong_key_is_refused(server: SshServer, tmp_path: Path,
                              monkeypatch: pytest.MonkeyPatch) -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f",
                    str(tmp_path / "stranger")], check=True)
    conn = server.airflow_connection()
    conn["extra"]["key_file"] = str(tmp_path / "stranger")
    monkeypatch.setenv("AIRFLOW_CONN_BAD_KEY", json.dumps(conn))
    with open_source(_uri(server, tmp_path), {"ssh_conn_id": "bad_key"},
                     name=ENDPOINT) as tree, pytest.raises(SourceAuthRefused) as err:
        replicate_round(tree, tmp_path / "dst", 1, BLOCK)
    assert ENDPOINT in str(err.value) and "refused the key" in str(err.value)
    assert "bad_key" in str(err.value)
    assert not (tmp_path / "dst").exists()


def test_changed_host_key_is_refused_never_accepted(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    src = _tree(tmp_path / "src")
    with SshServer(root=tmp_path / "sshd") as srv:
        monkeypatch.setenv("AIRFLOW_CONN_PINNED", srv.airflow_connection_json())
        # pinned through a known_hosts file named in the endpoint's details instead
        by_file = srv.airflow_connection()
        del by_file["extra"]["host_key"]
        monkeypatch.setenv("AIRFLOW_CONN_BY_FILE", json.dumps(by_file))
        known_hosts = tmp_path / "known_hosts"
        known_hosts.write_text(srv.known_hosts.read_text())
        for conn_id, details in (("pinned", {}), ("by_file", {"known_hosts": str(known_hosts)})):
            with open_source(_uri(srv, src), {"ssh_conn_id": conn_id, **details},
                             name=ENDPOINT) as tree:
                replicate_round(tree, tmp_path / f"dst-{conn_id}", 1, BLOCK)
        srv.restart(new_host_key=True)
        for conn_id, details in (("pinned", {}), ("by_file", {"known_hosts": str(known_hosts)})):
            (src / "var" / "new.txt").write_text(conn_id)
            with open_source(_uri(srv, src), {"ssh_conn_id": conn_id, **details},
                             name=ENDPOINT) as tree, pytest.raises(HostKeyRefused) as err:
                replicate_round(tree, tmp_path / f"dst-{conn_id}", 2, BLOCK)
            assert "not the pinned one" in str(err.value) and ENDPOINT in str(err.value)
            assert not (tmp_path / f"dst-{conn_id}" / "var" / "new.txt").exists()
            assert load_manifest(tmp_path / f"dst-{conn_id}").round == 1  # type: ignore[union-attr]

        # no key pinned anywhere: refused too, not trusted on first use
        monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.ssh/known_hosts to fall back on
        with open_source(_uri(srv, src), {"ssh_conn_id": "by_file"}, name=ENDPOINT) as tree, \
                pytest.raises(HostKeyRefused, match="no host key is pinned"):
            tree.check()

        # a connection that turns the check off is refused before connecting
        lax = srv.airflow_connection()
        lax["extra"]["no_host_key_check"] = "true"
        del lax["extra"]["host_key"]
        monkeypatch.setenv("AIRFLOW_CONN_LAX", json.dumps(lax))
        with pytest.raises(ConfigurationError, match="host key checking off"):
            open_source(_uri(srv, src), {"ssh_conn_id": "lax"}, name=ENDPOINT)


def test_file_rewritten_while_read_is_never_reported_done(server: SshServer, conn: str,
                                                          tmp_path: Path) -> None:
    src, dst = _tree(tmp_path / "src"), tmp_path / "dst"
    disk = src / "disk.img"
    rewritten: list[int] = []

    def writer(p: Progress) -> None:
        # after the second block of disk.img arrived: rewrite one block already copied
        # and one still to be read (the source hashed both before)
        if p.item == "disk.img" and p.sent >= 2 * BLOCK and not rewritten:
            with disk.open("r+b") as fh:
                for block in (0, 30):
                    fh.seek(block * BLOCK)
                    fh.write(os.urandom(BLOCK))
            rewritten.append(1)

    with open_source(_uri(server, src), {"ssh_conn_id": conn}, name=ENDPOINT) as tree:
        assert isinstance(tree, SshTree)
        tree.read_batch_bytes = BLOCK  # one block per request: the writer lands in between
        first = replicate_tree(tree, dst, BLOCK, ConvergencePolicy(delta_pct=100, max_rounds=1),
                               progress=writer)
        assert rewritten
        assert first.rounds[0].files_unstable == ["disk.img"]
        assert not first.converged  # a delta under the threshold, but not one state
        assert first.summary()["files_unstable"] == ["disk.img"]
        assert any("changed at the source while they were read" in w
                   for w in first.rounds[0].warnings)
        # the manifest tells what the target really holds; the source differs: not done
        assert verify(None, dst, BLOCK).manifest_matches_target
        mid = verify(tree, dst, BLOCK)
        assert not mid.ok and any("disk.img: blocks [0]" in p for p in mid.problems)

        again = replicate_round(tree, dst, 2, BLOCK)
        assert again.files_unstable == [] and again.blocks_sent == 1  # block 0 only
        assert verify(tree, dst, BLOCK).ok
    _same_trees(src, dst)


# paramiko's SFTP prefetch thread reports the killed socket on its own, as a thread exception
@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_dropped_connection_mid_round_resumes_from_the_journal(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir()
    rng = random.Random(5)
    (src / "vol0.img").write_bytes(rng.randbytes(64 * BLOCK))
    (src / "vol1.img").write_bytes(rng.randbytes(64 * BLOCK))
    with SshServer(root=tmp_path / "sshd") as srv:
        monkeypatch.setenv("AIRFLOW_CONN_DROPPY", srv.airflow_connection_json())
        dropped: list[int] = []

        def drop(p: Progress) -> None:
            # mid-way through vol1 the sessions are killed: the network dropped
            if p.item == "vol1.img" and p.sent >= 64 * BLOCK + 20 * BLOCK and not dropped:
                dropped.append(srv.kill_sessions())

        with open_source(_uri(srv, src), {"ssh_conn_id": "droppy"}, name=ENDPOINT) as tree:
            assert isinstance(tree, SshTree)
            tree.read_batch_bytes = 4 * BLOCK  # a drop must find reads still to do
            with pytest.raises(SourceConnectionLost) as err:
                replicate_round(tree, dst, 1, BLOCK, progress=drop, checkpoint_bytes=4 * BLOCK)
            assert dropped and dropped[0] > 0
            assert ENDPOINT in str(err.value) and f"127.0.0.1:{srv.port}" in str(err.value)
            assert "resumes from its journal" in str(err.value)
            journal = read_journal(dst)
            assert journal is not None and "vol0.img" in journal.done
            assert load_manifest(dst) is None  # nothing reported as done
            assert not verify(tree, dst, BLOCK).ok

            # the server itself goes away: the next try fails cleanly and keeps the journal
            srv.stop()
            tree.close()  # else the client may first see its open connection reset
            with pytest.raises(SourceUnreachable):
                replicate_round(tree, dst, 1, BLOCK)
            assert read_journal(dst) is not None

            srv.start()  # same folder, same port, same keys
            resumed = replicate_round(tree, dst, 1, BLOCK, checkpoint_bytes=4 * BLOCK)
        assert resumed.baseline == "resume"
        assert resumed.blocks_recovered >= 64 + 16  # vol0 and vol1's checkpointed blocks
        assert resumed.bytes_sent <= 48 * BLOCK
        with open_source(_uri(srv, src), {"ssh_conn_id": "droppy"}, name=ENDPOINT) as tree:
            assert verify(tree, dst, BLOCK).ok
    _same_trees(src, dst)


def test_source_that_is_not_a_folder_and_a_missing_python(server: SshServer, conn: str,
                                                          tmp_path: Path) -> None:
    src, dst = _tree(tmp_path / "src"), tmp_path / "dst"
    with open_source(_uri(server, src), {"ssh_conn_id": conn}, name=ENDPOINT) as tree:
        replicate_round(tree, dst, 1, BLOCK)
    with open_source(_uri(server, tmp_path / "gone"), {"ssh_conn_id": conn},
                     name=ENDPOINT) as tree, pytest.raises(SourceVanished) as err:
        replicate_round(tree, dst, 2, BLOCK)
    assert ENDPOINT in str(err.value)
    assert load_manifest(dst).round == 1  # type: ignore[union-attr]
    with open_source(_uri(server, src), {"ssh_conn_id": conn, "python": "python3-absent"},
                     name=ENDPOINT) as tree, pytest.raises(SourceCommandFailed) as err2:
        replicate_round(tree, dst, 2, BLOCK)
    assert "python3-absent is not installed" in str(err2.value) and ENDPOINT in str(err2.value)


def test_bad_endpoint_input_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(SourceUriError, match="ssh_conn_id"):
        open_source("ssh://127.0.0.1:22/srv", {}, name=ENDPOINT)
    with pytest.raises(ConfigurationError, match="no_such_conn"):
        open_source("ssh://127.0.0.1:22/srv", {"ssh_conn_id": "no_such_conn"}, name=ENDPOINT)
    for bad in ("ssh://127.0.0.1:22", "ftp://host/x", "file://remote-host/srv", "relative/x"):
        with pytest.raises(InputError) as err:
            open_source(bad, {"ssh_conn_id": "x"}, name=ENDPOINT)
        assert ENDPOINT in str(err.value)


def test_bandwidth_limit_applies_to_blocks_read_over_ssh(server: SshServer, conn: str,
                                                         tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "vol.img").write_bytes(random.Random(2).randbytes(16 * BLOCK))
    ticks: list[Progress] = []
    with open_source(_uri(server, src), {"ssh_conn_id": conn}, name=ENDPOINT) as tree:
        st = replicate_round(tree, tmp_path / "dst", 1, BLOCK, progress=ticks.append,
                             bandwidth_bytes_per_s=2 * 1024 * 1024)
    # the limiter holds the reads until the average rate is under the limit: 1 MiB at
    # 2 MiB/s cannot take less than half a second, however fast the machine (a lower bound)
    assert st.seconds >= 0.49
    assert ticks[-1].done == ticks[-1].total == 16 * BLOCK
    assert ticks[-1].sent == 16 * BLOCK


def test_file_that_shrinks_while_read_is_read_again_not_mistaken_for_a_drop(
        server: SshServer, conn: str, tmp_path: Path) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir()
    (src / "log.bin").write_bytes(random.Random(4).randbytes(32 * BLOCK))
    cut: list[int] = []

    def truncate(p: Progress) -> None:
        if p.sent >= 4 * BLOCK and not cut:
            os.truncate(src / "log.bin", 10 * BLOCK + 9)  # rotated while we read it
            cut.append(1)

    with open_source(_uri(server, src), {"ssh_conn_id": conn}, name=ENDPOINT) as tree:
        assert isinstance(tree, SshTree)
        tree.read_batch_bytes = 4 * BLOCK
        first = replicate_round(tree, dst, 1, BLOCK, progress=truncate)
        assert cut and first.files_unstable == ["log.bin"]
        assert not verify(tree, dst, BLOCK).ok
        second = replicate_round(tree, dst, 2, BLOCK)
        assert second.files_unstable == []
        assert verify(tree, dst, BLOCK).ok
    _same_trees(src, dst)
