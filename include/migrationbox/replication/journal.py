"""The journal of a replication round: what an interrupted round already wrote for sure.

While a round runs, ``<target>/.migrationbox/round-in-progress.json`` holds JSON lines:

* a header ``{"round", "started_at", "base_digest", "block_size"}``;
* ``{"begin": rel}`` — fsynced *before* the first write to a target file, so a file the
  journal does not name was not touched by the round and the old manifest still holds
  for it (this is the one fsync per changed file that crash safety costs);
* ``{"ckpt": rel, "from": i, "hashes": [...]}`` — blocks ``i..`` of ``rel`` are on the
  target, fsynced, and have these SHA-256s (written every ``checkpoint_bytes``);
* ``{"done": rel, "entry": {...}}`` — the whole file is on the target, fsynced.

The round commits by writing the new manifest (atomic rename) and then deleting the
journal. If it dies first, the next round rebuilds what the target holds from the old
manifest plus this journal (``resume_baseline``): finished files from their ``done``
entry, the file that was being written from its checkpoints plus a re-hash of the target
past the last checkpoint, untouched files from the old manifest. Blocks written and
checkpointed are therefore never sent again, and nothing unverified is trusted. A lost
``ckpt``/``done`` line (machine crash before the page cache was written) only costs a
re-hash, never correctness, which is why only ``begin`` is fsynced.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from pydantic import ValidationError

from migrationbox.fileio import atomic_write_text
from migrationbox.replication.manifest import FileEntry, Manifest, journal_path


class JournalError(ValueError):
    """The journal of an unfinished round is unreadable: the target must be re-hashed."""


@dataclass
class JournalState:
    """What an unfinished round left behind, parsed."""

    round: int
    started_at: str
    base_digest: str
    block_size: int
    done: dict[str, FileEntry] = field(default_factory=dict)
    begun: set[str] = field(default_factory=set)
    checkpoints: dict[str, list[str]] = field(default_factory=dict)


def read_journal(target: Path) -> JournalState | None:
    """The unfinished round's journal, None if there is none; ``JournalError`` if bad.

    A torn last line (the process died while appending) is ignored: it is at most one
    checkpoint or one ``done`` that was not durable yet.
    """
    path = journal_path(target)
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        return None
    if not lines:
        raise JournalError(f"{path}: empty journal")
    try:
        head = json.loads(lines[0])
        state = JournalState(round=int(head["round"]), started_at=str(head.get("started_at", "")),
                             base_digest=str(head.get("base_digest", "")),
                             block_size=int(head["block_size"]))
    except (ValueError, KeyError, TypeError) as exc:
        raise JournalError(f"{path}: unreadable header ({exc}); an older format?") from exc
    for n, line in enumerate(lines[1:], 2):
        try:
            rec = json.loads(line)
        except ValueError:
            if n == len(lines):
                break  # torn tail
            raise JournalError(f"{path}: line {n} is not JSON") from None
        try:
            if "begin" in rec:
                state.begun.add(rec["begin"])
                state.checkpoints.pop(rec["begin"], None)
            elif "ckpt" in rec:
                hashes = state.checkpoints.setdefault(rec["ckpt"], [])
                del hashes[int(rec["from"]):]
                if len(hashes) == int(rec["from"]):
                    hashes.extend(rec["hashes"])
            elif "done" in rec:
                state.done[rec["done"]] = FileEntry.model_validate(rec["entry"])
        except (KeyError, TypeError, ValueError, ValidationError) as exc:
            raise JournalError(f"{path}: line {n}: {exc}") from exc
    return state


def resume_baseline(target: Path, old: Manifest, journal: JournalState) -> tuple[Manifest, int]:
    """What the target holds after an interrupted round (see module docstring).

    Returns the baseline manifest and how many blocks it recovered from the journal
    without re-hashing them (the "verified blocks" the next round will not send).
    """
    files = dict(old.files)
    recovered = 0
    for rel, entry in journal.done.items():
        files[rel] = entry
        recovered += len(entry.blocks)
    for rel in journal.begun - set(journal.done):
        path = target / rel
        if path.is_symlink() or not path.is_file():
            files.pop(rel, None)
            continue
        known = journal.checkpoints.get(rel, [])
        size = path.stat().st_size
        hashes = list(known[: size // old.block_size])
        recovered += len(hashes)
        with path.open("rb") as fh:
            fh.seek(len(hashes) * old.block_size)
            while data := fh.read(old.block_size):
                hashes.append(hashlib.sha256(data).hexdigest())
        files[rel] = FileEntry(size=size, mode=files[rel].mode if rel in files else 0o644,
                               blocks=hashes)
    return old.model_copy(update={"files": files}), recovered


class JournalWriter:
    """Appends the records of one round (see module docstring)."""

    def __init__(self, target: Path, round_no: int, started_at: str, base_digest: str,
                 block_size: int):
        self.path = journal_path(target)
        # The header replaces any older journal in one rename (fsynced first), so a reader
        # never sees the journal empty or header-less, even if this process dies here.
        header = {"round": round_no, "started_at": started_at, "base_digest": base_digest,
                  "block_size": block_size}
        atomic_write_text(self.path, json.dumps(header, separators=(",", ":")) + "\n")
        self._fh: IO[str] = self.path.open("a")

    def _write(self, rec: dict[str, Any], durable: bool = False) -> None:
        self._fh.write(json.dumps(rec, separators=(",", ":")) + "\n")
        self._fh.flush()
        if durable:
            os.fsync(self._fh.fileno())

    def begin(self, rel: str) -> None:
        self._write({"begin": rel}, durable=True)

    def checkpoint(self, rel: str, start: int, hashes: list[str]) -> None:
        if hashes:
            self._write({"ckpt": rel, "from": start, "hashes": hashes})

    def done(self, rel: str, entry: FileEntry) -> None:
        self._write({"done": rel, "entry": entry.model_dump()})

    def close(self) -> None:
        if not self._fh.closed:
            self._fh.close()

    def commit(self) -> None:
        """Called after the new manifest is in place: the round is over."""
        self.close()
        self.path.unlink(missing_ok=True)
