"""Block-level incremental replication of a folder tree (a "disk") with SHA-256 manifests.

One *round* reads the source once, block by block; a block is written to the target only
when its hash differs from the target's last good manifest. Files gone from the source
are removed from the target. The new manifest (hashes of what was actually written) is
sealed and atomically replaced last. While a round runs, a journal file marks the target
as in flux: if the round dies, the journal stays, the old manifest stays, and the next
round re-hashes the target instead of trusting the manifest — so an interrupted round
can never leave a block the manifest claims is something else.

``replicate_tree`` repeats rounds until one copies no more than the threshold (a share
of the tree or a number of bytes, whichever is larger) or ``max_rounds`` is reached;
``verify`` re-reads the target and compares it with the source and the manifest.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

from migrationbox.errors import ExternalServiceError
from migrationbox.replication.journal import (
    JournalError,
    JournalWriter,
    read_journal,
    resume_baseline,
)
from migrationbox.replication.manifest import (
    DEFAULT_BLOCK_SIZE,
    MIB,
    FileEntry,
    Manifest,
    ManifestError,
    hash_file,
    journal_path,
    load_manifest,
    scan_tree,
    walk_tree,
    write_manifest,
)
from migrationbox.replication.progress import Progress, ProgressCallback, Throttle, noop
from migrationbox.replication.source import LocalTree, SourceTree, scan_manifest

#: a source folder on this machine, or any ``SourceTree`` (``source.open_source``)
Source = Path | str | SourceTree


@dataclass(frozen=True)
class ConvergencePolicy:
    """When to stop: a round copied ≤ max(``delta_pct`` % of the tree, ``delta_bytes``)."""

    delta_pct: float = 1.0
    delta_bytes: int = 1 * MIB
    max_rounds: int = 10

    def threshold(self, total_bytes: int) -> int:
        return max(int(total_bytes * self.delta_pct / 100.0), self.delta_bytes)


@dataclass
class RoundStats:
    round: int
    bytes_total: int = 0
    bytes_sent: int = 0
    blocks_total: int = 0
    blocks_sent: int = 0
    files_changed: int = 0
    files_deleted: int = 0
    baseline: str = "manifest"  # "manifest", "resume", "rescan" or "empty" (see _baseline)
    manifest_digest: str = ""
    warnings: list[str] = field(default_factory=list)
    blocks_recovered: int = 0  # verified blocks an interrupted round left, not sent again
    started_at: str = ""
    seconds: float = 0.0
    throttled_s: float = 0.0
    #: files that changed at the source while this round read them (read again next round)
    files_unstable: list[str] = field(default_factory=list)
    #: bytes that crossed the network (SSH sources; 0 for a local folder)
    wire_bytes: int = 0


@dataclass
class ReplicationResult:
    source: str
    target: str
    block_size: int
    rounds: list[RoundStats] = field(default_factory=list)
    converged: bool = False
    threshold_bytes: int = 0

    @property
    def bytes_sent(self) -> int:
        return sum(r.bytes_sent for r in self.rounds)

    @property
    def blocks_sent(self) -> int:
        return sum(r.blocks_sent for r in self.rounds)

    @property
    def bytes_total(self) -> int:
        return self.rounds[-1].bytes_total if self.rounds else 0

    @property
    def wire_bytes(self) -> int:
        return sum(r.wire_bytes for r in self.rounds)

    @property
    def manifest_digest(self) -> str:
        return self.rounds[-1].manifest_digest if self.rounds else ""

    @property
    def lag_s(self) -> float | None:
        """Age of the target's state when the last round ended (its start to now)."""
        return _age_s(self.rounds[-1].started_at) if self.rounds else None

    def summary(self) -> dict[str, object]:
        lag = self.lag_s
        return {
            "bytes_total": self.bytes_total,
            "round_seconds": [r.seconds for r in self.rounds],
            "round_baselines": [r.baseline for r in self.rounds],
            "blocks_recovered": sum(r.blocks_recovered for r in self.rounds),
            "warnings": [w for r in self.rounds for w in r.warnings][:20],
            "lag_s": None if lag is None else round(lag, 2),
            "throttled_s": round(sum(r.throttled_s for r in self.rounds), 2),
            "bytes_sent": self.bytes_sent,
            "blocks_sent": self.blocks_sent,
            "rounds": len(self.rounds),
            "round_bytes": [r.bytes_sent for r in self.rounds],
            "converged": self.converged,
            "threshold_bytes": self.threshold_bytes,
            "wire_bytes": self.wire_bytes,
            "files_unstable": sorted({f for r in self.rounds[-1:] for f in r.files_unstable}),
            "block_size": self.block_size,
            "manifest_digest": self.manifest_digest,
        }


class SourceVanished(ExternalServiceError):
    """The source tree disappeared or became empty during or before a round.

    Nothing on the target was deleted or replaced: the last good manifest still stands
    (and, mid-round, the journal lets the next round resume).
    """


def _baseline(target: Path, block_size: int,
              rescan: bool = False) -> tuple[Manifest, str, list[str], int]:
    """What the target holds, how we know it, warnings, and blocks recovered from a journal.

    ``manifest``: the last good manifest, trusted; ``resume``: that manifest plus the
    journal of an interrupted round; ``rescan``: a fresh hash of the target, because the
    manifest or journal could not be trusted (each such case is named in the warnings,
    with what happened); ``empty``: nothing there yet.
    """
    warnings: list[str] = []
    if rescan:
        return scan_tree(target, block_size), "rescan", ["re-hash requested"], 0
    try:
        manifest = load_manifest(target)
    except ManifestError as exc:
        warnings.append(f"{exc}; re-hashed the target instead of trusting it (nothing on the "
                        "target was overwritten because of it)")
        return scan_tree(target, block_size), "rescan", warnings, 0
    try:
        journal = read_journal(target)
    except JournalError as exc:
        warnings.append(f"{exc}; re-hashed the target")
        return scan_tree(target, block_size), "rescan", warnings, 0
    if manifest is None and journal is not None and not journal.base_digest \
            and journal.block_size == block_size:
        # the very first round was interrupted: resume it from an empty baseline
        manifest = Manifest(block_size=block_size)
    if manifest is None:
        has_data = target.exists() and any(True for _ in walk_tree(target))
        if not has_data:
            return Manifest(block_size=block_size), "empty", warnings, 0
        if journal is None:
            warnings.append(f"{target} holds data but no manifest; re-hashed it and kept "
                            "what already matches the source")
        return scan_tree(target, block_size), "rescan", warnings, 0
    if manifest.block_size != block_size:
        warnings.append(f"block size changed ({manifest.block_size} -> {block_size}); "
                        "re-hashed the target")
        return scan_tree(target, block_size), "rescan", warnings, 0
    if journal is not None:
        if journal.block_size != block_size or journal.base_digest != manifest.digest:
            warnings.append(f"journal of round {journal.round} does not belong to the "
                            "manifest; re-hashed the target")
            return scan_tree(target, block_size), "rescan", warnings, 0
        base, recovered = resume_baseline(target, manifest, journal)
        warnings.append(f"round {journal.round} was interrupted; resumed from its journal "
                        f"({recovered} verified blocks are not sent again)")
        return base, "resume", warnings, recovered
    return manifest, "manifest", warnings, 0


def _remove(path: Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.is_dir():
        shutil.rmtree(path)


@dataclass
class _RoundIO:
    """What the copy loop of one round shares: journal, throttle, progress, counters."""

    round_no: int
    block_size: int
    stats: RoundStats
    journal: JournalWriter
    throttle: Throttle
    tick: ProgressCallback
    total_hint: int
    checkpoint_bytes: int
    started: float
    lag_s: float | None
    done: int = 0

    def report(self, item: str) -> None:
        self.tick(Progress("disk", self.round_no, self.done, self.total_hint, "bytes", item,
                           sent=self.stats.bytes_sent,
                           elapsed_s=time.monotonic() - self.started, lag_s=self.lag_s))


def _round_io(target: Path, round_no: int, block_size: int,
              baseline: tuple[Manifest, str, list[str], int], started_at: str,
              progress: ProgressCallback | None, bandwidth_bytes_per_s: float | None,
              checkpoint_bytes: int, total_hint: int) -> _RoundIO:
    """The stats, journal and counters of a round about to write (local or remote source):
    the journal exists from here on, so the target is marked in flux."""
    base, how, warnings, recovered = baseline
    stats = RoundStats(round=round_no, baseline=how, warnings=warnings,
                       blocks_recovered=recovered, started_at=started_at)
    journal = JournalWriter(target, round_no, started_at, base.digest, block_size)
    return _RoundIO(round_no, block_size, stats, journal, Throttle(bandwidth_bytes_per_s),
                    progress or noop, total_hint, max(block_size, checkpoint_bytes),
                    time.monotonic(), _age_s(base.started_at) if how == "manifest" else None)


def _usable_base(base: FileEntry | None, dst: Path) -> FileEntry | None:
    """The manifest's entry if the target file still looks like it, else None (send all):
    a target changed under the manifest is trusted for nothing."""
    if base is None or base.type != "file":
        return None
    try:
        if dst.is_symlink() or not dst.is_file() or dst.stat().st_size != base.size:
            return None
    except OSError:
        return None
    return base


def _open_out(io: _RoundIO, rel: str, dst: Path) -> BinaryIO:
    """Open ``dst`` for block writes, after the journal's durable ``begin`` for it."""
    io.journal.begin(rel)
    if dst.is_symlink() or dst.is_dir():
        _remove(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    return dst.open("r+b" if dst.exists() else "wb")


def _place_dir(dst: Path) -> None:
    if dst.is_symlink() or (dst.exists() and not dst.is_dir()):
        _remove(dst)
    dst.mkdir(parents=True, exist_ok=True)


def _place_symlink(io: _RoundIO, rel: str, dst: Path, link: str, mode: int) -> FileEntry:
    """Make ``dst`` the symlink ``link`` (journaled when it changes); its manifest entry."""
    if not (dst.is_symlink() and os.readlink(dst) == link):
        io.journal.begin(rel)
        if dst.exists() or dst.is_symlink():
            _remove(dst)
        dst.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(link, dst)
        io.stats.files_changed += 1
    return FileEntry(type="symlink", link=link, mode=mode)


def _seal_round(io: _RoundIO, target: Path, base: Manifest, files: dict[str, FileEntry],
                dirs: list[str], kept: set[str], started_at: str) -> Manifest:
    """End of a round's writes: keep the target's copy of files that vanished at the
    source mid-round, remove what the source no longer has (files first, then
    directories deepest-first), and write the sealed manifest (last, atomically)."""
    stats = io.stats
    for rel in kept:
        old = base.files.get(rel)
        if old is not None and (target / rel).exists():
            files[rel] = old
    if kept:
        stats.warnings.append(f"{len(kept)} file(s) vanished at the source during the "
                              f"round and were kept on the target: {sorted(kept)[:5]}")
    for rel, _st in sorted(walk_tree(target), key=lambda x: x[0].count("/"), reverse=True):
        if rel in files or rel in dirs:
            continue
        path = target / rel
        if path.exists() or path.is_symlink():
            _remove(path)
            stats.files_deleted += 1
    manifest = Manifest(block_size=io.block_size, files=files,
                        dirs=dirs).sealed(io.round_no, started_at)
    write_manifest(target, manifest)
    return manifest


def _end_round(io: _RoundIO, manifest: Manifest) -> RoundStats:
    """After the journal is closed: the round is done (journal removed), stats final."""
    io.journal.commit()
    stats = io.stats
    stats.manifest_digest = manifest.digest
    stats.seconds = round(time.monotonic() - io.started, 3)
    stats.throttled_s = round(io.throttle.slept_s, 3)
    io.done = stats.bytes_total
    io.report("")
    return stats


def _copy_file(src: Path, dst: Path, base: FileEntry | None, io: _RoundIO,
               rel: str) -> FileEntry:
    """Send the blocks of ``src`` that differ from ``base``; return what ``dst`` now holds.

    The journal's ``begin`` is made durable before the first write to ``dst``, and every
    ``checkpoint_bytes`` the file is fsynced and the hashes so far are journaled.
    """
    block_size, stats = io.block_size, io.stats
    st = src.stat()
    fh = src.open("rb")  # opened before anything is written: a vanished file raises here
    base = _usable_base(base, dst)
    hashes: list[str] = []
    out = None
    size = 0
    changed = base is None
    ckpt_from = 0
    since_ckpt = 0

    try:
        index = 0
        while True:
            data = fh.read(block_size)
            if not data:
                break
            digest = hashlib.sha256(data).hexdigest()
            hashes.append(digest)
            if base is None or index >= len(base.blocks) or base.blocks[index] != digest:
                if out is None:
                    out = _open_out(io, rel, dst)
                out.seek(index * block_size)
                out.write(data)
                stats.bytes_sent += len(data)
                stats.blocks_sent += 1
                since_ckpt += len(data)
                io.throttle(len(data))
                changed = True
            size += len(data)
            index += 1
            io.done += len(data)
            if out is not None and since_ckpt >= io.checkpoint_bytes:
                out.flush()
                os.fsync(out.fileno())
                io.journal.checkpoint(rel, ckpt_from, hashes[ckpt_from:])
                ckpt_from, since_ckpt = len(hashes), 0
            io.report(rel)
        if base is not None and size != base.size:
            changed = True
        if changed and out is None:
            out = _open_out(io, rel, dst)
        if out is not None:
            out.truncate(size)
            out.flush()
            os.fsync(out.fileno())
    finally:
        fh.close()
        if out is not None:
            out.close()
    mode = stat.S_IMODE(st.st_mode)
    if base is None or base.mode != mode or changed:
        os.chmod(dst, mode)
    if changed or (base is not None and base.mode != mode):
        stats.files_changed += 1
    stats.blocks_total += len(hashes)
    stats.bytes_total += size
    entry = FileEntry(size=size, mode=mode, blocks=hashes)
    if out is not None or (base is not None and base.mode != mode):
        io.journal.done(rel, entry)
    return entry


def _age_s(iso: str) -> float | None:
    if not iso:
        return None
    try:
        return (datetime.now(UTC) - datetime.fromisoformat(iso)).total_seconds()
    except ValueError:
        return None


def _local_folder(source: Source) -> Path | None:
    """The folder of a local source (the one-pass local round), None for a remote one."""
    if isinstance(source, LocalTree):
        return source.root
    if isinstance(source, str | os.PathLike):
        return Path(source)
    return None


def _describe(source: Source) -> str:
    return source.label if isinstance(source, SourceTree) else str(source)


def replicate_round(
    source: Source,
    target: Path,
    round_no: int = 1,
    block_size: int = DEFAULT_BLOCK_SIZE,
    progress: ProgressCallback | None = None,
    rescan: bool = False,
    bandwidth_bytes_per_s: float | None = None,
    checkpoint_bytes: int = 64 * MIB,
    allow_empty_source: bool = False,
) -> RoundStats:
    """One incremental round from ``source`` to ``target`` (see module docstring).

    ``rescan=True`` hashes the target instead of trusting its manifest: the repair
    round after ``verify`` found the target altered behind the manifest's back.
    ``bandwidth_bytes_per_s`` caps the send rate. A source that is missing, or empty
    while the target holds data (an unmounted volume looks like that), raises
    ``SourceVanished`` before anything is deleted; pass ``allow_empty_source=True``
    when the source was really emptied.

    ``source`` is a local folder (a ``Path``, or a ``LocalTree``): each block is read and
    hashed here, in one pass. Any other ``SourceTree`` (an SSH source) hashes its blocks
    where the data lives and only differing blocks are read (``sourced``).
    """
    folder = _local_folder(source)
    if folder is None:
        from migrationbox.replication.sourced import replicate_round_from

        assert isinstance(source, SourceTree)
        return replicate_round_from(source, Path(target), round_no, block_size, progress,
                                    rescan, bandwidth_bytes_per_s, checkpoint_bytes,
                                    allow_empty_source)
    source, target = folder, Path(target)
    if not source.is_dir():
        raise SourceVanished(
            f"replication source {source} is not a directory (unmounted or deleted?); "
            f"the target {target} was left as it was: check the source and run again")
    target.mkdir(parents=True, exist_ok=True)
    baseline = _baseline(target, block_size, rescan)
    base = baseline[0]
    started_at = datetime.now(UTC).isoformat()
    entries = list(walk_tree(source))  # stat-only pass: gives progress a total
    if not entries and base.files and not allow_empty_source:
        raise SourceVanished(
            f"replication source {source} is empty but the target holds "
            f"{len(base.files)} files: refusing to delete them. If the source volume is "
            "unmounted, mount it and run again; if it was really emptied, run with "
            "allow_empty_source")
    total_hint = sum(st.st_size for _, st in entries if stat.S_ISREG(st.st_mode))
    io = _round_io(target, round_no, block_size, baseline, started_at, progress,
                   bandwidth_bytes_per_s, checkpoint_bytes, total_hint)
    files: dict[str, FileEntry] = {}
    dirs: list[str] = []
    kept: set[str] = set()
    try:
        for rel, st in entries:
            src, dst = source / rel, target / rel
            if stat.S_ISDIR(st.st_mode):
                _place_dir(dst)
                dirs.append(rel)
            elif stat.S_ISLNK(st.st_mode):
                try:
                    link = os.readlink(src)
                except FileNotFoundError:
                    kept.add(rel)
                    continue
                files[rel] = _place_symlink(io, rel, dst, link, stat.S_IMODE(st.st_mode))
            elif stat.S_ISREG(st.st_mode):
                try:
                    files[rel] = _copy_file(src, dst, base.files.get(rel), io, rel)
                except FileNotFoundError:
                    # gone at the source while we walked (the target was not touched):
                    # keep the target's copy until a round sees the file missing for good
                    kept.add(rel)
        if not source.is_dir():
            raise SourceVanished(
                f"replication source {source} disappeared during round {round_no}; nothing "
                f"was deleted on {target} and the last good manifest stands: check the "
                "source and run again (the next round resumes from the journal)")
        manifest = _seal_round(io, target, base, files, dirs, kept, started_at)
    finally:
        io.journal.close()
    return _end_round(io, manifest)


def replicate_tree(
    source: Source,
    target: Path,
    block_size: int = DEFAULT_BLOCK_SIZE,
    policy: ConvergencePolicy | None = None,
    progress: ProgressCallback | None = None,
    bandwidth_bytes_per_s: float | None = None,
    between_rounds: Callable[[int], None] | None = None,
    allow_empty_source: bool = False,
) -> ReplicationResult:
    """Rounds until a round's copied bytes fall to the threshold, or ``max_rounds``.

    ``between_rounds(round_no)`` runs after each round that did not converge (the lab's
    cadence: sleep, or let a writer change the source).
    """
    policy = policy or ConvergencePolicy()
    result = ReplicationResult(_describe(source), str(target), block_size)
    for round_no in range(1, policy.max_rounds + 1):
        stats = replicate_round(source, target, round_no, block_size, progress,
                                bandwidth_bytes_per_s=bandwidth_bytes_per_s,
                                allow_empty_source=allow_empty_source)
        result.rounds.append(stats)
        result.threshold_bytes = policy.threshold(stats.bytes_total)
        if stats.bytes_sent <= result.threshold_bytes and not stats.files_unstable:
            result.converged = True
            break
        if between_rounds is not None:
            between_rounds(round_no)
    return result


@dataclass
class VerifyResult:
    ok: bool
    target: str
    files_checked: int = 0
    bytes_checked: int = 0
    manifest_digest: str | None = None
    manifest_matches_target: bool = False
    source_matches_target: bool | None = None
    problems: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, object]:
        return {
            "ok": self.ok,
            "files_checked": self.files_checked,
            "bytes_checked": self.bytes_checked,
            "manifest_digest": self.manifest_digest,
            "manifest_matches_target": self.manifest_matches_target,
            "source_matches_target": self.source_matches_target,
            "problems": self.problems[:20],
            "problem_count": len(self.problems),
        }


def _diff(
    expected: Manifest, actual: Manifest, what: str, exclude: frozenset[str] = frozenset()
) -> list[str]:
    problems: list[str] = []
    for rel, want in sorted(expected.files.items()):
        if rel in exclude:
            continue
        got = actual.files.get(rel)
        if got is None:
            problems.append(f"{rel}: missing on target ({what})")
            continue
        if want.type != got.type:
            problems.append(f"{rel}: is a {got.type} on target, {want.type} in {what}")
        elif want.type == "symlink":
            if want.link != got.link:
                problems.append(f"{rel}: symlink points to {got.link!r}, {what} says {want.link!r}")
        else:
            if want.size != got.size:
                problems.append(f"{rel}: size {got.size} on target, {want.size} in {what}")
            bad = [i for i, (a, b) in enumerate(zip(want.blocks, got.blocks, strict=False))
                   if a != b]
            if bad:
                problems.append(f"{rel}: blocks {bad[:10]} differ from {what}")
            if want.mode != got.mode:
                problems.append(f"{rel}: mode {got.mode:o} on target, {want.mode:o} in {what}")
    for rel in sorted(set(actual.files) - set(expected.files) - exclude):
        problems.append(f"{rel}: on target but not in {what}")
    for rel in sorted(set(expected.dirs) - set(actual.dirs)):
        problems.append(f"{rel}/: directory missing on target ({what})")
    return problems


def verify(
    source: Source | None,
    target: Path,
    block_size: int | None = None,
    source_exclude: frozenset[str] | set[str] = frozenset(),
) -> VerifyResult:
    """Re-hash the target and compare it with its manifest and (if given) the source.

    ``source_exclude`` names files (relative paths) that are meant to differ from the
    source, such as config files the configure phase rewrote; the caller checks those.
    """
    target = Path(target)
    result = VerifyResult(ok=False, target=str(target))
    try:
        manifest = load_manifest(target)
    except ManifestError as exc:
        manifest = None
        result.problems.append(str(exc))
    if journal_path(target).exists():
        result.problems.append("a replication round did not finish (journal present)")
    size = block_size or (manifest.block_size if manifest else DEFAULT_BLOCK_SIZE)
    actual = scan_tree(target, size)
    result.files_checked = len(actual.files)
    result.bytes_checked = actual.total_bytes
    if manifest is None:
        result.problems.append("no valid manifest on target")
    else:
        result.manifest_digest = manifest.digest
        problems = _diff(manifest, actual, "manifest") if manifest.block_size == size else [
            f"manifest block size {manifest.block_size} differs from {size}"]
        result.manifest_matches_target = not problems
        result.problems += problems
    if source is not None:
        folder = _local_folder(source)
        if folder is not None:
            expected = scan_tree(folder, size)
        else:
            assert isinstance(source, SourceTree)
            expected = scan_manifest(source, size)  # hashed at the source
        problems = _diff(expected, actual, "source", frozenset(source_exclude))
        result.source_matches_target = not problems
        result.problems += problems
    result.ok = not result.problems
    return result


def refresh_manifest(target: Path, paths: list[str]) -> Manifest:
    """Re-hash ``paths`` (relative) after an intended change to the target, and reseal.

    The configure phase rewrites config files on the target after replication; the
    manifest must keep describing what the target holds, or verification would flag the
    rewrite as corruption and the next round would not notice the difference.
    """
    target = Path(target)
    if journal_path(target).exists():
        raise ManifestError(f"{target}: a replication round is in progress; not updating")
    manifest = load_manifest(target)
    if manifest is None:
        raise ManifestError(f"{target}: no manifest to update (replicate first)")
    files = dict(manifest.files)
    for rel in paths:
        path = target / rel
        if path.is_symlink() or not path.is_file():
            files.pop(rel, None)
            continue
        size, blocks = hash_file(path, manifest.block_size)
        files[rel] = FileEntry(size=size, mode=stat.S_IMODE(path.stat().st_mode), blocks=blocks)
    updated = manifest.model_copy(update={"files": files}).sealed(manifest.round)
    write_manifest(target, updated)
    return updated
