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
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from migrationbox.replication.manifest import (
    FileEntry,
    hash_file,
)
from migrationbox.replication.progress import ProgressCallback
from migrationbox.replication.source import SourceEntry, SourceTree

if TYPE_CHECKING:
    from migrationbox.replication.disk import RoundStats, _RoundIO


def _needed(entry: SourceEntry, base: FileEntry | None) -> list[int]:
    if base is None:
        return list(range(len(entry.blocks)))
    return [i for i, digest in enumerate(entry.blocks)
            if i >= len(base.blocks) or base.blocks[i] != digest]


def _copy_file(source: SourceTree, entry: SourceEntry, dst: Path, base: FileEntry | None,
               io: _RoundIO) -> tuple[FileEntry, bool]:
    """Read the blocks of ``entry`` that differ from ``base`` and write them to ``dst``.

    Returns what ``dst`` now holds and whether the file was unstable. Raises
    ``FileNotFoundError`` before writing anything when the file vanished at the source.
    """
    from migrationbox.replication.disk import _open_out, _usable_base

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

    try:
        for n, index in enumerate(needed):
            data = first if n == 0 else next(reader)
            expected = chunks[n][1]
            if out is None:
                out = _open_out(io, rel, dst)
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
            out = _open_out(io, rel, dst)
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
        SourceVanished,
        _baseline,
        _end_round,
        _place_dir,
        _place_symlink,
        _round_io,
        _seal_round,
    )

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
    baseline = _baseline(target, block_size, rescan)
    base = baseline[0]
    io = _round_io(target, round_no, block_size, baseline, started_at, progress,
                   bandwidth_bytes_per_s, checkpoint_bytes, scan.total_bytes)
    stats = io.stats
    files: dict[str, FileEntry] = {}
    dirs: list[str] = []
    kept: set[str] = set()
    seen = 0
    try:
        for entry in scan:
            seen += 1
            rel, dst = entry.rel, target / entry.rel
            if entry.type == "dir":
                _place_dir(dst)
                dirs.append(rel)
            elif entry.type == "symlink":
                files[rel] = _place_symlink(io, rel, dst, entry.link or "", entry.mode)
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
        manifest = _seal_round(io, target, base, files, dirs, kept, started_at)
        if stats.files_unstable:
            stats.warnings.append(
                f"{len(stats.files_unstable)} file(s) changed at the source while they were "
                f"read and will be read again next round: {stats.files_unstable[:5]}")
    finally:
        scan.close()
        io.journal.close()
        stats.wire_bytes = source.wire_bytes - wire_start
    return _end_round(io, manifest)
