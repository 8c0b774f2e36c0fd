"""Changed-block tracking (CBT): copy only the blocks the source says it dirtied.

A scan round reads the whole source to find what changed, so its time — and the pause
window of a pre-copy that relies on it — is a full read of the disk however little
changed. Hypervisors solve this with a dirty bitmap (VMware CBT, QEMU dirty bitmaps);
the lab's stand-in is an append-only log next to the disk, ``<source>/.migrationbox/
cbt.log``, with one ``<relative path>\\t<offset>\\t<length>`` line per write, appended
*before* the write (a crash between the two only costs a needless copy). The lab's
writer (``writeload``) keeps it; a real agent would fill it from the hypervisor.

``DirtyLog.read(start, end)`` returns the byte ranges logged in a window of the log
(offsets, so the log is never truncated under a writer); ``copy_dirty`` copies just those
blocks, hashing each and comparing with the target's manifest, then reseals the manifest
(journal first, manifest last, as in ``disk``). It requires a trustworthy manifest and
unchanged file sizes; anything else returns ``None`` and the caller does a scan round.
"""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from migrationbox.replication.disk import RoundStats
from migrationbox.replication.journal import JournalWriter
from migrationbox.replication.manifest import (
    META_DIR,
    FileEntry,
    ManifestError,
    journal_path,
    load_manifest,
    write_manifest,
)

LOG_NAME = "cbt.log"


def log_path(source: Path) -> Path:
    return Path(source) / META_DIR / LOG_NAME


def mark(source: Path, rel: str, offset: int, length: int) -> None:
    """Writer side: record a write before doing it (open-append-close: rename-safe)."""
    path = log_path(source)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as fh:
        fh.write(f"{rel}\t{offset}\t{length}\n")


@dataclass
class DirtyLog:
    """Reader side. Windows overlap by one round on purpose (see ``precopy``): a write is
    logged a moment before it lands, so an entry read by one round may describe data
    that round read too early; reading it again in the next round closes that gap."""

    source: Path

    def size(self) -> int:
        try:
            return log_path(self.source).stat().st_size
        except FileNotFoundError:
            return 0

    def read(self, start: int, end: int) -> list[tuple[str, int, int]]:
        """Complete entries in bytes ``[start, end)`` of the log."""
        try:
            with log_path(self.source).open("rb") as fh:
                fh.seek(start)
                data = fh.read(max(0, end - start))
        except FileNotFoundError:
            return []
        lines = data.split(b"\n")
        lines.pop()  # empty after the last newline, or an entry still being written
        out = []
        for line in lines:
            rel, off, length = line.decode().split("\t")
            out.append((rel, int(off), int(length)))
        return out


def blocks_of(ranges: list[tuple[str, int, int]], block_size: int) -> dict[str, set[int]]:
    out: dict[str, set[int]] = {}
    for rel, off, length in ranges:
        first, last = off // block_size, (off + max(length, 1) - 1) // block_size
        out.setdefault(rel, set()).update(range(first, last + 1))
    return out


def copy_dirty(source: Path, target: Path, dirty: dict[str, set[int]], round_no: int,
               block_size: int) -> RoundStats | None:
    """Copy the dirty blocks whose hash differs from the manifest; None if not possible."""
    source, target = Path(source), Path(target)
    if journal_path(target).exists():
        return None
    try:
        manifest = load_manifest(target)
    except ManifestError:
        return None
    if manifest is None or manifest.block_size != block_size:
        return None
    for rel in dirty:
        entry = manifest.files.get(rel)
        src, dst = source / rel, target / rel
        if (entry is None or entry.type != "file" or not src.is_file()
                or src.stat().st_size != entry.size or not dst.is_file()
                or dst.stat().st_size != entry.size):
            return None
    t0 = time.monotonic()
    started_at = datetime.now(UTC).isoformat()
    stats = RoundStats(round=round_no, baseline="cbt", started_at=started_at)
    journal = JournalWriter(target, round_no, started_at, manifest.digest, block_size)
    files = dict(manifest.files)
    try:
        for rel, indices in sorted(dirty.items()):
            entry = files[rel]
            hashes = list(entry.blocks)
            begun = False
            with (source / rel).open("rb") as fin, (target / rel).open("r+b") as fout:
                for i in sorted(indices):
                    if i >= len(hashes):
                        continue
                    fin.seek(i * block_size)
                    data = fin.read(block_size)
                    digest = hashlib.sha256(data).hexdigest()
                    stats.blocks_total += 1
                    stats.bytes_total += len(data)
                    if digest == hashes[i]:
                        continue
                    if not begun:
                        journal.begin(rel)
                        begun = True
                    fout.seek(i * block_size)
                    fout.write(data)
                    hashes[i] = digest
                    stats.blocks_sent += 1
                    stats.bytes_sent += len(data)
                fout.flush()
                os.fsync(fout.fileno())
            if begun:
                files[rel] = FileEntry(size=entry.size, mode=entry.mode, blocks=hashes)
                journal.done(rel, files[rel])
                stats.files_changed += 1
        sealed = manifest.model_copy(update={"files": files}).sealed(round_no, started_at)
        write_manifest(target, sealed)
    finally:
        journal.close()
    journal.commit()
    stats.manifest_digest = sealed.digest
    stats.seconds = round(time.monotonic() - t0, 3)
    return stats
