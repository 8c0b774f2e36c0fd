"""A replication round from a ``SourceTree`` whose block hashes are computed at the source.

The local round (``disk.replicate_round`` on a folder) reads every block and hashes it
here. Over a network that would move the whole disk every round, so for a remote source
the round asks the source for its block hashes first (``SourceTree.scan``) and reads only
the blocks whose hash differs from the target's manifest. Everything else is the local
round's machinery, shared: the baseline (manifest, journal resume, rescan), the journal's
``begin``/``ckpt``/``done`` records, the throttle, progress and the atomic manifest.

A file that changes while it is read is detected, not trusted: every block read is hashed
again on arrival and compared with the hash the source reported; a mismatch, a short read,
or a file whose size or mtime moved while the source hashed it makes the file *unstable*.
Its target copy is then re-hashed locally (so the manifest describes what the target
really holds), it is named in ``RoundStats.files_unstable``, and the round does not count
as converged: the next round reads it again. ``verify`` compares the target with hashes
taken at the source, so an unstable file never passes as done.
"""

from __future__ import annotations

import hashlib
import os
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from migrationbox.replication.journal import JournalWriter
from migrationbox.replication.manifest import (
    FileEntry,
    Manifest,
    hash_file,
    walk_tree,
    write_manifest,
)
from migrationbox.replication.progress import ProgressCallback, Throttle, noop
from migrationbox.replication.source import SourceEntry, SourceTree

if TYPE_CHECKING:
    from migrationbox.replication.disk import RoundStats, _RoundIO


def _needed(entry: SourceEntry, base: FileEntry | None) -> list[int]:
    if base is None:
        return list(range(len(entry.blocks)))
    return [i for i, digest in enumerate(entry.blocks)
            if i >= len(base.blocks) or base.blocks[i] != digest]


def _usable_base(base: FileEntry | None, dst: Path) -> FileEntry | None:
    """The manifest's entry if the target file still looks like it, else None (send all)."""
    if base is None or base.type != "file":
        return None
    try:
        if dst.is_symlink() or not dst.is_file() or dst.stat().st_size != base.size:
            return None
    except OSError:
        return None
    return base


def _copy_file(source: SourceTree, entry: SourceEntry, dst: Path, base: FileEntry | None,
               io: _RoundIO) -> tuple[FileEntry, bool]:
    """Read the blocks of ``entry`` that differ from ``base`` and write them to ``dst``.

    Returns what ``dst`` now holds and whether the file was unstable. Raises
    ``FileNotFoundError`` before writing anything when the file vanished at the source.
    """
    from migrationbox.replication.disk import _remove

    rel, block_size, stats = entry.rel, io.block_size, io.stats
    base = _usable_base(base, dst)
    needed = _needed(entry, base)
    size_changed = base is None or base.size != entry.size
    unstable = entry.unstable
    out = None
    if needed:
        chunks = [(i * block_size, min(block_size, entry.size - i * block_size)) for i in needed]
        reader = source.read_blocks(rel, chunks)
        first = next(reader)  # opens the file: a vanished file raises before any write
    # the hashes of what the target holds, block by block, as the copy goes
    held = list(entry.blocks)
    ckpt_from = since_ckpt = 0

    def open_out():
        io.journal.begin(rel)
        if dst.is_symlink() or dst.is_dir():
            _remove(dst)
        dst.parent.mkdir(parents=True, exist_ok=True)
        return dst.open("r+b" if dst.exists() else "wb")

    try:
        for n, index in enumerate(needed):
            data = first if n == 0 else next(reader)
            expected = chunks[n][1]
            if out is None:
                out = open_out()
            out.seek(index * block_size)
            out.write(data)
            digest = hashlib.sha256(data).hexdigest()
            if len(data) != expected or digest != entry.blocks[index]:
                unstable = True  # the file changed between hashing and reading
            held[index] = digest
            stats.bytes_sent += len(data)
            stats.blocks_sent += 1
            since_ckpt += len(data)
            io.throttle(len(data))
            io.done += len(data)
            if since_ckpt >= io.checkpoint_bytes:
                out.flush()
                os.fsync(out.fileno())
                io.journal.checkpoint(rel, ckpt_from, held[ckpt_from:index + 1])
                ckpt_from, since_ckpt = index + 1, 0
            io.report(rel)
        if size_changed and out is None:
            out = open_out()
        if out is not None:
            out.truncate(entry.size)
            out.flush()
            os.fsync(out.fileno())
    finally:
        if out is not None:
            out.close()
        if needed:
            reader.close()
    read = sum(length for _offset, length in chunks) if needed else 0
    io.done += entry.size - read  # the blocks not read were examined at the source
    if not needed:
        io.report(rel)
    mode = entry.mode
    if base is None or base.mode != mode or out is not None:
        os.chmod(dst, mode)
    if out is not None or (base is not None and base.mode != mode):
        stats.files_changed += 1
    if unstable:
        size, hashes = hash_file(dst, block_size)  # what the target really holds
        result = FileEntry(size=size, mode=mode, blocks=hashes)
    else:
        result = FileEntry(size=entry.size, mode=mode, blocks=held)
    stats.blocks_total += len(result.blocks)
    stats.bytes_total += result.size
    if out is not None or (base is not None and base.mode != mode):
        io.journal.done(rel, result)
    return result, unstable


def replicate_round_from(
    source: SourceTree,
    target: Path,
    round_no: int,
    block_size: int,
    progress: ProgressCallback | None,
    rescan: bool,
    bandwidth_bytes_per_s: float | None,
    checkpoint_bytes: int,
    allow_empty_source: bool,
) -> RoundStats:
    """``disk.replicate_round`` for a ``SourceTree`` (see module docstring)."""
    from migrationbox.replication.disk import (
        RoundStats,
        SourceVanished,
        _age_s,
        _baseline,
        _remove,
        _RoundIO,
    )

    tick = progress or noop
    target = Path(target)
    wire_start = source.wire_bytes
    started_at = datetime.now(UTC).isoformat()
    # the source first: an unreachable or refusing server leaves the target untouched
    scan = source.scan(block_size)
    if not scan.ok:
        raise SourceVanished(
            f"{source.label}: the replication source is not a directory (unmounted or "
            f"deleted?); the target {target} was left as it was: check the source and run "
            "again")
    target.mkdir(parents=True, exist_ok=True)
    base, how, warnings, recovered = _baseline(target, block_size, rescan)
    stats = RoundStats(round=round_no, baseline=how, warnings=warnings,
                       blocks_recovered=recovered, started_at=started_at)
    journal = JournalWriter(target, round_no, started_at, base.digest, block_size)
    io = _RoundIO(round_no, block_size, stats, journal, Throttle(bandwidth_bytes_per_s), tick,
                  scan.total_bytes, max(block_size, checkpoint_bytes), time.monotonic(),
                  _age_s(base.started_at) if how == "manifest" else None)
    files: dict[str, FileEntry] = {}
    dirs: list[str] = []
    kept: set[str] = set()
    seen = 0
    try:
        for entry in scan:
            seen += 1
            rel, dst = entry.rel, target / entry.rel
            if entry.type == "dir":
                if dst.is_symlink() or (dst.exists() and not dst.is_dir()):
                    _remove(dst)
                dst.mkdir(parents=True, exist_ok=True)
                dirs.append(rel)
            elif entry.type == "symlink":
                link = entry.link or ""
                if not (dst.is_symlink() and os.readlink(dst) == link):
                    journal.begin(rel)
                    if dst.exists() or dst.is_symlink():
                        _remove(dst)
                    dst.parent.mkdir(parents=True, exist_ok=True)
                    os.symlink(link, dst)
                    stats.files_changed += 1
                files[rel] = FileEntry(type="symlink", link=link, mode=entry.mode)
            elif entry.type == "file":
                try:
                    files[rel], unstable = _copy_file(source, entry, dst, base.files.get(rel),
                                                      io)
                except FileNotFoundError:
                    kept.add(rel)  # gone at the source since it was hashed: keep the copy
                    continue
                if unstable:
                    stats.files_unstable.append(rel)
        if not seen and base.files and not allow_empty_source:
            raise SourceVanished(
                f"{source.label}: the replication source is empty but the target holds "
                f"{len(base.files)} files: refusing to delete them. If the source volume is "
                "unmounted, mount it and run again; if it was really emptied, run with "
                "allow_empty_source")
        for rel in kept:
            old = base.files.get(rel)
            if old is not None and (target / rel).exists():
                files[rel] = old
        if kept:
            stats.warnings.append(f"{len(kept)} file(s) vanished at the source during the "
                                  f"round and were kept on the target: {sorted(kept)[:5]}")
        if stats.files_unstable:
            stats.warnings.append(
                f"{len(stats.files_unstable)} file(s) changed at the source while they were "
                f"read and will be read again next round: {stats.files_unstable[:5]}")
        for rel, _st in sorted(walk_tree(target), key=lambda x: x[0].count("/"), reverse=True):
            if rel in files or rel in dirs:
                continue
            path = target / rel
            if path.exists() or path.is_symlink():
                _remove(path)
                stats.files_deleted += 1
        manifest = Manifest(block_size=block_size, files=files,
                            dirs=dirs).sealed(round_no, started_at)
        write_manifest(target, manifest)
    finally:
        scan.close()
        journal.close()
        stats.wire_bytes = source.wire_bytes - wire_start
    journal.commit()
    stats.manifest_digest = manifest.digest
    stats.seconds = round(time.monotonic() - io.started, 3)
    stats.throttled_s = round(io.throttle.slept_s, 3)
    io.done = stats.bytes_total
    io.report("")
    return stats

