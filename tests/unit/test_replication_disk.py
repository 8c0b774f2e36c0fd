"""Block-level disk replication: incremental rounds, crash safety, deletes, verification."""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import pytest

from migrationbox.replication.disk import (
    ConvergencePolicy,
    SourceVanished,
    refresh_manifest,
    replicate_round,
    replicate_tree,
    verify,
)
from migrationbox.replication.manifest import (
    ManifestError,
    journal_path,
    load_manifest,
    manifest_path,
    scan_tree,
)
from migrationbox.replication.progress import Progress

BLOCK = 64 * 1024


def _tree(root: Path, seed: int = 1) -> None:
    rng = random.Random(seed)
    (root / "etc/app").mkdir(parents=True)
    (root / "var/lib/data").mkdir(parents=True)
    (root / "empty/dir").mkdir(parents=True)
    (root / "etc/app/app.env").write_text("DATABASE_URL=postgresql://db-01:5432/app\n")
    (root / "etc/app/app.env").chmod(0o640)
    (root / "var/lib/data/big.bin").write_bytes(rng.randbytes(10 * BLOCK + 123))
    (root / "var/lib/data/small.bin").write_bytes(rng.randbytes(BLOCK // 3))
    (root / "var/lib/data/empty.bin").write_bytes(b"")
    (root / "run.sh").write_text("#!/bin/sh\necho hi\n")
    (root / "run.sh").chmod(0o755)
    os.symlink("etc/app/app.env", root / "current.env")


@pytest.fixture
def trees(tmp_path: Path) -> tuple[Path, Path]:
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir()
    _tree(src)
    return src, dst


def test_first_round_copies_everything_and_verifies(trees):
    src, dst = trees
    result = replicate_tree(src, dst, BLOCK, ConvergencePolicy(delta_pct=0, delta_bytes=0))
    assert result.converged and len(result.rounds) == 2
    total = sum(p.stat().st_size for p in src.rglob("*") if p.is_file() and not p.is_symlink())
    assert result.rounds[0].bytes_sent == total
    assert result.rounds[0].baseline == "empty"
    # the second round found nothing to send, which is what converged means here
    assert result.rounds[-1].bytes_sent == 0
    big = "var/lib/data/big.bin"
    assert (dst / big).read_bytes() == (src / big).read_bytes()
    assert (dst / "run.sh").stat().st_mode & 0o777 == 0o755
    assert (dst / "etc/app/app.env").stat().st_mode & 0o777 == 0o640
    assert os.readlink(dst / "current.env") == "etc/app/app.env"
    assert (dst / "empty/dir").is_dir()
    assert (dst / "var/lib/data/empty.bin").stat().st_size == 0
    check = verify(src, dst)
    assert check.ok, check.problems
    assert check.manifest_matches_target and check.source_matches_target
    manifest = load_manifest(dst)
    assert manifest is not None and manifest.digest == result.manifest_digest
    assert len(manifest.files["var/lib/data/big.bin"].blocks) == 11


def test_incremental_round_sends_only_changed_blocks(trees):
    src, dst = trees
    replicate_tree(src, dst, BLOCK)
    big = src / "var/lib/data/big.bin"
    with big.open("r+b") as fh:  # one byte in block 3, one in block 7
        fh.seek(3 * BLOCK + 10)
        fh.write(b"\xff")
        fh.seek(7 * BLOCK)
        fh.write(b"\x00\x01")
    stats = replicate_round(src, dst, round_no=1, block_size=BLOCK)
    assert stats.baseline == "manifest"
    assert stats.blocks_sent == 2
    assert stats.bytes_sent == 2 * BLOCK
    assert stats.files_changed == 1
    assert verify(src, dst).ok


def test_growing_and_shrinking_files(trees):
    src, dst = trees
    replicate_tree(src, dst, BLOCK)
    big = src / "var/lib/data/big.bin"
    data = big.read_bytes()
    big.write_bytes(data[: 4 * BLOCK + 5])  # shrink: no block differs but the last
    stats = replicate_round(src, dst, 1, BLOCK)
    assert stats.blocks_sent == 1 and stats.bytes_sent == 5
    assert (dst / "var/lib/data/big.bin").stat().st_size == 4 * BLOCK + 5
    with big.open("ab") as fh:
        fh.write(b"x" * (2 * BLOCK))  # grow: the partial block and two new ones
    stats = replicate_round(src, dst, 2, BLOCK)
    assert stats.blocks_sent == 3
    assert verify(src, dst).ok


def test_deletes_propagate_to_the_target(trees):
    src, dst = trees
    replicate_tree(src, dst, BLOCK)
    (src / "var/lib/data/small.bin").unlink()
    (src / "current.env").unlink()
    (src / "empty/dir").rmdir()
    stats = replicate_round(src, dst, 1, BLOCK)
    assert stats.files_deleted == 3
    assert not (dst / "var/lib/data/small.bin").exists()
    assert not (dst / "current.env").is_symlink()
    assert not (dst / "empty/dir").exists() and (dst / "empty").is_dir()
    manifest = load_manifest(dst)
    assert "var/lib/data/small.bin" not in manifest.files
    assert verify(src, dst).ok


def test_unfinished_round_keeps_the_last_good_manifest(trees):
    src, dst = trees
    replicate_tree(src, dst, BLOCK)
    good = manifest_path(dst).read_bytes()
    big = src / "var/lib/data/big.bin"
    original = big.read_bytes()
    with big.open("r+b") as fh:
        fh.seek(5 * BLOCK)
        fh.write(b"NEW DATA")

    def crash(p: Progress) -> None:
        if p.item == "var/lib/data/big.bin" and p.done > 6 * BLOCK:
            raise RuntimeError("power cut")

    with pytest.raises(RuntimeError, match="power cut"):
        replicate_round(src, dst, 2, BLOCK, progress=crash)
    # the new block reached the target, but the manifest is still the last good one
    assert b"NEW DATA" in (dst / "var/lib/data/big.bin").read_bytes()
    assert manifest_path(dst).read_bytes() == good
    assert journal_path(dst).exists()
    unfinished = verify(None, dst)
    assert not unfinished.ok
    assert any("did not finish" in p for p in unfinished.problems)
    # the source goes back to what the manifest says; a round that trusted the manifest
    # would now skip block 5 and leave "NEW DATA" on the target
    big.write_bytes(original)
    stats = replicate_round(src, dst, 3, BLOCK)
    assert stats.baseline == "resume"  # old manifest + the journal; big.bin re-hashed
    assert stats.blocks_sent == 1
    assert not journal_path(dst).exists()
    assert (dst / "var/lib/data/big.bin").read_bytes() == original
    assert verify(src, dst).ok


def test_verify_detects_corruption_and_names_the_block(trees):
    src, dst = trees
    replicate_tree(src, dst, BLOCK)
    target_big = dst / "var/lib/data/big.bin"
    with target_big.open("r+b") as fh:
        fh.seek(2 * BLOCK + 1)
        fh.write(b"\x42")
    (dst / "stray.txt").write_text("not from the source")
    result = verify(src, dst)
    assert not result.ok
    assert not result.manifest_matches_target and not result.source_matches_target
    assert any("big.bin: blocks [2] differ from manifest" in p for p in result.problems)
    assert any("stray.txt: on target but not in source" in p for p in result.problems)
    # a normal round trusts the manifest, so it removes the stray file but cannot see
    # the flipped byte; verify still reports it
    normal = replicate_round(src, dst, 1, BLOCK)
    assert normal.files_deleted == 1 and normal.blocks_sent == 0
    assert not verify(src, dst).ok
    # a rescan round hashes the target and sends exactly the damaged block
    repair = replicate_round(src, dst, 2, BLOCK, rescan=True)
    assert repair.baseline == "rescan" and repair.blocks_sent == 1
    assert verify(src, dst).ok


def test_tampered_manifest_is_rejected(trees):
    src, dst = trees
    replicate_tree(src, dst, BLOCK)
    raw = json.loads(manifest_path(dst).read_text())
    raw["files"]["run.sh"]["mode"] = 0o777
    manifest_path(dst).write_text(json.dumps(raw))
    with pytest.raises(ManifestError, match="digest mismatch"):
        load_manifest(dst)
    # a round does not trust it either: it re-hashes the target and goes on
    stats = replicate_round(src, dst, 1, BLOCK)
    assert stats.baseline == "rescan" and stats.bytes_sent == 0
    assert verify(src, dst).ok


def test_rounds_stop_at_max_rounds_when_the_source_keeps_changing(trees):
    src, dst = trees
    rng = random.Random(9)
    churn = src / "var/lib/data/churn.bin"
    churn.write_bytes(rng.randbytes(40 * BLOCK))

    def writer(p: Progress) -> None:  # a busy application rewriting its data file
        if p.done >= p.total:
            churn.write_bytes(rng.randbytes(40 * BLOCK))

    policy = ConvergencePolicy(delta_pct=1.0, delta_bytes=BLOCK, max_rounds=3)
    result = replicate_tree(src, dst, BLOCK, policy, progress=writer)
    assert not result.converged
    assert len(result.rounds) == 3
    assert all(r.bytes_sent >= 40 * BLOCK for r in result.rounds)


def test_threshold_is_share_or_bytes_whichever_is_larger():
    policy = ConvergencePolicy(delta_pct=1.0, delta_bytes=1000, max_rounds=5)
    assert policy.threshold(10_000) == 1000
    assert policy.threshold(10_000_000) == 100_000


def test_refresh_manifest_records_intended_changes(trees):
    src, dst = trees
    replicate_tree(src, dst, BLOCK)
    (dst / "etc/app/app.env").write_text("DATABASE_URL=postgresql://db-01.target:5432/app\n")
    assert not verify(None, dst).ok
    refresh_manifest(dst, ["etc/app/app.env"])
    assert verify(None, dst).ok
    only_config = verify(src, dst, source_exclude={"etc/app/app.env"})
    assert only_config.ok, only_config.problems
    assert not verify(src, dst).ok


def test_scan_is_stable_and_ignores_metadata(trees):
    src, _ = trees
    first = scan_tree(src, BLOCK)
    (src / ".migrationbox").mkdir()
    (src / ".migrationbox" / "DECOMMISSIONED.json").write_text("{}")
    second = scan_tree(src, BLOCK)
    assert first.digest == second.digest


def _big_tree(root: Path, files: int = 4, blocks: int = 16) -> int:
    rng = random.Random(5)
    root.mkdir(parents=True, exist_ok=True)
    for i in range(files):
        (root / f"f{i}.bin").write_bytes(rng.randbytes(blocks * BLOCK))
    return files * blocks * BLOCK


def test_interrupted_first_copy_resumes_without_resending_checkpointed_blocks(tmp_path):
    src, dst = tmp_path / "src", tmp_path / "dst"
    total = _big_tree(src)
    cut_at = 2 * 16 * BLOCK + 9 * BLOCK  # two files done, the third at block 9

    def crash(p: Progress) -> None:
        if p.done >= cut_at:
            raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        replicate_round(src, dst, 1, BLOCK, progress=crash, checkpoint_bytes=4 * BLOCK)
    assert load_manifest(dst) is None and journal_path(dst).exists()
    resumed = replicate_round(src, dst, 2, BLOCK)
    assert resumed.baseline == "resume"
    # 32 blocks of the finished files + 8 checkpointed of the third come from the journal;
    # the 9th block of the third file was written but not checkpointed: re-hashed, equal
    assert resumed.blocks_recovered == 2 * 16 + 8
    assert resumed.bytes_sent == total - cut_at
    assert not journal_path(dst).exists()
    assert verify(src, dst).ok


def test_bandwidth_limit_slows_the_round(tmp_path):
    src, dst = tmp_path / "src", tmp_path / "dst"
    total = _big_tree(src, files=1, blocks=8)  # 512 KiB
    ticks: list[Progress] = []
    stats = replicate_round(src, dst, 1, BLOCK, progress=ticks.append,
                            bandwidth_bytes_per_s=2 * 1024 * 1024)
    assert stats.seconds >= total / (2 * 1024 * 1024) * 0.9
    assert stats.throttled_s > 0
    mid = [t for t in ticks if 0 < t.done < t.total]
    assert mid and all(t.eta_s is not None and t.sent <= t.done for t in mid)
    assert ticks[-1].percent == 100.0 and ticks[-1].eta_s == 0.0


def test_source_that_vanishes_or_empties_deletes_nothing(trees):
    src, dst = trees
    replicate_tree(src, dst, BLOCK)
    good = manifest_path(dst).read_bytes()
    moved = src.with_name("src-unmounted")
    src.rename(moved)
    with pytest.raises(SourceVanished, match="not a directory"):
        replicate_round(src, dst, 2, BLOCK)
    src.mkdir()  # an empty mount point where the volume used to be
    with pytest.raises(SourceVanished, match="refusing to delete"):
        replicate_round(src, dst, 2, BLOCK)
    assert manifest_path(dst).read_bytes() == good
    assert verify(moved, dst).ok
    # disappearing in the middle of a round: nothing deleted, the last manifest stands
    src.rmdir()
    moved.rename(src)
    (src / "var/lib/data/big.bin").write_bytes(b"changed" * 1000)

    def unmount(p: Progress) -> None:
        if p.item == "var/lib/data/big.bin" and src.exists():
            src.rename(moved)

    with pytest.raises(SourceVanished, match="disappeared during round"):
        replicate_round(src, dst, 3, BLOCK, progress=unmount)
    assert manifest_path(dst).read_bytes() == good
    assert (dst / "run.sh").exists() and journal_path(dst).exists()
    moved.rename(src)
    stats = replicate_round(src, dst, 4, BLOCK)
    assert stats.baseline == "resume" and any("interrupted" in w for w in stats.warnings)
    assert verify(src, dst).ok


def test_bad_manifest_is_reported_not_trusted(trees):
    src, dst = trees
    replicate_tree(src, dst, BLOCK)
    manifest_path(dst).write_text("{not json")
    stats = replicate_round(src, dst, 2, BLOCK)
    assert stats.baseline == "rescan" and stats.bytes_sent == 0
    assert any("malformed manifest" in w and "re-hashed" in w for w in stats.warnings)


def test_a_new_journal_replaces_the_old_one_without_an_empty_moment(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch):
    """A round killed while it starts its journal leaves either the previous journal or
    the new header, never an empty file (CI once read one mid-truncation)."""
    from migrationbox.replication import journal as journal_mod

    target = tmp_path / "dst"
    first = journal_mod.JournalWriter(target, 1, "t1", "", 4096)
    first.begin("a.img")
    first.close()
    seen: list[int] = []
    real = journal_mod.atomic_write_text

    def observed(path: Path, text: str, mode: int | None = None) -> Path:
        before = journal_mod.read_journal(target)
        assert before is not None and before.round == 1 and before.begun == {"a.img"}
        out = real(path, text, mode)
        after = journal_mod.read_journal(target)
        assert after is not None and after.round == 2 and not after.begun
        seen.append(after.round)
        return out

    monkeypatch.setattr(journal_mod, "atomic_write_text", observed)
    second = journal_mod.JournalWriter(target, 2, "t2", "", 4096)
    second.begin("b.img")
    second.close()
    assert seen == [2]
    state = journal_mod.read_journal(target)
    assert state is not None and state.round == 2 and state.begun == {"b.img"}
