"""Replication sources without a network: URIs, the local tree, the shipped hashing script,
and the source-hashed round (``sourced``) driven through a local tree."""

from __future__ import annotations

import io
import json
import os
import random
import subprocess
import sys
from contextlib import redirect_stdout
from pathlib import Path

import pytest

from migrationbox.errors import InputError
from migrationbox.replication import remote_hash
from migrationbox.replication.disk import replicate_round, verify
from migrationbox.replication.manifest import scan_tree
from migrationbox.replication.source import (
    LocalTree,
    SourceEntry,
    SourceUriError,
    open_source,
    parse_ssh_uri,
    scan_manifest,
)
from migrationbox.replication.sourced import replicate_round_from

BLOCK = 4096


def _tree(root: Path) -> Path:
    rng = random.Random(9)
    (root / "a" / "b").mkdir(parents=True)
    (root / "disk.img").write_bytes(rng.randbytes(10 * BLOCK + 5))
    (root / "a" / "b" / "c.txt").write_text("c\n")
    (root / "empty").write_bytes(b"")
    os.symlink("disk.img", root / "a" / "link")
    return root


def test_open_source_forms_and_refusals(tmp_path: Path) -> None:
    local = open_source(f"file://{tmp_path}", {}, name="s1/disk/root")
    assert isinstance(local, LocalTree) and local.root == tmp_path
    assert "s1/disk/root" in local.label
    assert open_source(str(tmp_path)).root == tmp_path  # type: ignore[union-attr]
    assert parse_ssh_uri("ssh://ops@db1.example:2222/srv/data/", "e") == \
        parse_ssh_uri("ssh://ops@db1.example:2222/srv/data", "e")
    target = parse_ssh_uri("ssh://db1.example/srv/my%20data", "e")
    assert (target.user, target.port, target.path) == (None, None, "/srv/my data")
    for bad in ("ssh://host", "ssh://host/", "ssh://host:notaport/x", "s3://bucket/x",
                "file://otherhost/x", "", "ssh://host/x"):
        with pytest.raises(InputError) as err:
            open_source(bad, {}, name="s1/disk/root")
        assert "s1/disk/root" in str(err.value)
    with pytest.raises(SourceUriError, match="ssh_conn_id"):
        open_source("ssh://host/x", {"ssh_conn_id": ""}, name="e")


def test_local_tree_scan_matches_the_local_manifest(tmp_path: Path) -> None:
    src = _tree(tmp_path / "src")
    with LocalTree(src) as tree:
        assert scan_manifest(tree, BLOCK).digest == scan_tree(src, BLOCK).digest
        assert tree.total_bytes() == 10 * BLOCK + 5 + 2
        chunks = list(tree.read_blocks("disk.img", [(BLOCK, BLOCK), (10 * BLOCK, BLOCK)]))
        data = (src / "disk.img").read_bytes()
        assert chunks == [data[BLOCK:2 * BLOCK], data[10 * BLOCK:]]


def test_remote_hash_script_walks_and_hashes_like_the_local_manifest(tmp_path: Path) -> None:
    src = _tree(tmp_path / "src")
    (src / ".migrationbox").mkdir()  # the metadata folder at the top is never data
    out = io.StringIO()
    with redirect_stdout(out):
        remote_hash.main({"root": str(src), "block_size": BLOCK})
    lines = [json.loads(x) for x in out.getvalue().splitlines()]
    assert lines[0]["ok"] is True and lines[-1] == {"end": True, "entries": len(lines) - 3}
    assert lines[1]["total_bytes"] == 10 * BLOCK + 5 + 2
    local = scan_tree(src, BLOCK)
    files = {r["rel"]: r for r in lines[2:-1] if r["type"] != "dir"}
    assert set(files) == set(local.files)
    assert files["disk.img"]["blocks"] == local.files["disk.img"].blocks
    assert files["a/link"]["link"] == "disk.img"
    assert [r["rel"] for r in lines[2:-1] if r["type"] == "dir"] == local.dirs
    # and it runs as shipped: text on stdin to a bare interpreter, plus one main() line
    program = Path(remote_hash.__file__).read_text() + \
        f"\nmain(json.loads({json.dumps({'root': str(tmp_path / 'nope'), 'block_size': 1})!r}))\n"
    run = subprocess.run([sys.executable, "-I", "-"], input=program, capture_output=True,
                         text=True, check=True)
    assert json.loads(run.stdout.splitlines()[0])["ok"] is False


class _Rewriting(LocalTree):
    """A local tree whose file changes between being hashed and being read."""

    def read_blocks(self, rel, chunks):  # type: ignore[no-untyped-def]
        with (self.root / rel).open("r+b") as fh:
            for block in (0, 5):  # one block the round will not read, one it will
                fh.seek(block * BLOCK)
                fh.write(b"X" * BLOCK)
        yield from super().read_blocks(rel, chunks)


def test_source_hashed_round_copies_resumes_and_flags_files_changed_while_read(
        tmp_path: Path) -> None:
    src, dst = _tree(tmp_path / "src"), tmp_path / "dst"
    tree = LocalTree(src)
    full = replicate_round_from(tree, dst, 1, BLOCK, None, False, None, BLOCK, False)
    assert full.bytes_sent == full.bytes_total and not full.files_unstable
    assert verify(src, dst, BLOCK).ok
    with (src / "disk.img").open("r+b") as fh:
        fh.seek(3 * BLOCK)
        fh.write(b"new")
    (src / "a" / "b" / "c.txt").unlink()
    inc = replicate_round_from(tree, dst, 2, BLOCK, None, False, None, BLOCK, False)
    assert (inc.blocks_sent, inc.files_deleted) == (1, 1)
    assert verify(src, dst, BLOCK).ok

    with (src / "disk.img").open("r+b") as fh:
        fh.seek(5 * BLOCK)
        fh.write(b"newer")
    shaky = replicate_round_from(_Rewriting(src), dst, 3, BLOCK, None, False, None, BLOCK,
                                 False)
    assert shaky.files_unstable == ["disk.img"]
    assert verify(None, dst, BLOCK).manifest_matches_target  # the manifest tells the truth
    assert not verify(src, dst, BLOCK).ok  # block 0 changed after it was hashed
    settle = replicate_round_from(tree, dst, 4, BLOCK, None, False, None, BLOCK, False)
    assert settle.files_unstable == [] and settle.blocks_sent == 1
    assert verify(src, dst, BLOCK).ok


def test_replicate_round_on_a_local_tree_keeps_the_one_pass_local_path(tmp_path: Path) -> None:
    src, dst = _tree(tmp_path / "src"), tmp_path / "dst"
    st = replicate_round(LocalTree(src), dst, 1, BLOCK)
    assert st.wire_bytes == 0 and verify(LocalTree(src), dst, BLOCK).ok
    assert SourceEntry("x", "file", 0o644).blocks == []
