"""Block manifests: what a replicated folder tree holds, block by block.

A manifest lists every regular file (size, mode, SHA-256 of each fixed-size block),
symlink and directory of a tree, plus a digest over all of that. The target's manifest
lives in ``<target>/.migrationbox/manifest.json`` and is replaced atomically (temp file,
fsync, rename) only after a round has finished writing, so it always describes the last
*good* state; a round that dies half-way leaves a journal file behind instead, which
tells the next round not to trust the manifest.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from migrationbox.fileio import atomic_write_text

MIB = 1024 * 1024
DEFAULT_BLOCK_SIZE = 4 * MIB
META_DIR = ".migrationbox"
MANIFEST_NAME = "manifest.json"
JOURNAL_NAME = "round-in-progress.json"  # JSON lines (see ``journal``)
#: files the configure phase rewrote after replication (see ``phases.configure``)
CONFIGURED_NAME = "configured.json"
MANIFEST_VERSION = 1


class ManifestError(ValueError):
    """A manifest file is unreadable, malformed or fails its digest."""


class FileEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: str = Field(default="file", pattern="^(file|symlink)$")
    size: int = Field(default=0, ge=0)
    mode: int = Field(default=0o644, ge=0)
    blocks: list[str] = Field(default_factory=list)
    link: str | None = None


class Manifest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: int = MANIFEST_VERSION
    block_size: int = Field(gt=0)
    files: dict[str, FileEntry] = Field(default_factory=dict)
    dirs: list[str] = Field(default_factory=list)
    round: int = 0
    #: when the round that produced this state started reading the source: the target
    #: holds the source as of (at best) this instant, so ``now - started_at`` is the lag
    started_at: str = ""
    created_at: str = ""
    digest: str = ""

    def compute_digest(self) -> str:
        """SHA-256 over the content part (block size, files, dirs), canonical JSON."""
        body = {
            "block_size": self.block_size,
            "files": {k: v.model_dump() for k, v in sorted(self.files.items())},
            "dirs": sorted(self.dirs),
        }
        canonical = json.dumps(body, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()

    def sealed(self, round_no: int, started_at: str | None = None) -> Manifest:
        m = self.model_copy(update={
            "round": round_no,
            "created_at": datetime.now(UTC).isoformat(),
            "started_at": started_at if started_at is not None else self.started_at,
        })
        m.digest = m.compute_digest()
        return m

    @property
    def total_bytes(self) -> int:
        return sum(e.size for e in self.files.values() if e.type == "file")

    @property
    def total_blocks(self) -> int:
        return sum(len(e.blocks) for e in self.files.values())


def meta_dir(tree: Path) -> Path:
    return tree / META_DIR


def manifest_path(tree: Path) -> Path:
    return meta_dir(tree) / MANIFEST_NAME


def journal_path(tree: Path) -> Path:
    return meta_dir(tree) / JOURNAL_NAME


def load_manifest(tree: Path) -> Manifest | None:
    """The tree's manifest, or None if there is none; ``ManifestError`` if it is bad."""
    path = manifest_path(tree)
    try:
        raw = path.read_text()
    except FileNotFoundError:
        return None
    try:
        manifest = Manifest.model_validate_json(raw)
    except ValidationError as exc:
        raise ManifestError(f"{path}: malformed manifest: {exc.errors()[:3]}") from exc
    if manifest.digest != manifest.compute_digest():
        raise ManifestError(f"{path}: digest mismatch (the manifest was altered or torn)")
    return manifest


def write_manifest(tree: Path, manifest: Manifest) -> None:
    """Atomic replace: readers see the old manifest or the new one, never a mix."""
    path = manifest_path(tree)
    atomic_write_text(path, manifest.model_dump_json(indent=1))
    _fsync_dir(path.parent)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def walk_tree(root: Path) -> Iterator[tuple[str, os.stat_result]]:
    """(relative path, lstat) of every entry under ``root`` except the metadata folder,
    in a stable order (sorted per directory, parents before children)."""

    def _walk(rel_dir: str) -> Iterator[tuple[str, os.stat_result]]:
        abs_dir = root / rel_dir if rel_dir else root
        try:
            names = sorted(os.listdir(abs_dir))
        except FileNotFoundError:  # removed while we walk: nothing to report
            return
        for name in names:
            if not rel_dir and name == META_DIR:
                continue
            rel = f"{rel_dir}/{name}" if rel_dir else name
            try:
                st = os.lstat(root / rel)
            except FileNotFoundError:
                continue
            yield rel, st
            if stat.S_ISDIR(st.st_mode):
                yield from _walk(rel)

    yield from _walk("")


def hash_file(path: Path, block_size: int) -> tuple[int, list[str]]:
    hashes: list[str] = []
    size = 0
    with path.open("rb") as fh:
        while True:
            data = fh.read(block_size)
            if not data:
                break
            size += len(data)
            hashes.append(hashlib.sha256(data).hexdigest())
    return size, hashes


def scan_tree(root: Path, block_size: int = DEFAULT_BLOCK_SIZE) -> Manifest:
    """Hash every block of every file under ``root`` (the metadata folder excluded)."""
    files: dict[str, FileEntry] = {}
    dirs: list[str] = []
    if root.exists():
        for rel, st in walk_tree(root):
            if stat.S_ISDIR(st.st_mode):
                dirs.append(rel)
            elif stat.S_ISLNK(st.st_mode):
                files[rel] = FileEntry(type="symlink", link=os.readlink(root / rel),
                                       mode=stat.S_IMODE(st.st_mode))
            elif stat.S_ISREG(st.st_mode):
                size, blocks = hash_file(root / rel, block_size)
                files[rel] = FileEntry(size=size, mode=stat.S_IMODE(st.st_mode), blocks=blocks)
    return Manifest(block_size=block_size, files=files, dirs=dirs).sealed(0)
