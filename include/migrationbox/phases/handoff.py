"""State one wave task hands to a later one, and the guard when it is missing.

Provision leaves the ids of what it built (the data subnets and security groups the
database migration service's runner must sit in); the replication rounds leave their
per-round figures for the final sync; the final sync leaves the verdict the
``replication_converged`` sensor reads. Those tasks may run in different worker
processes, and under the CeleryExecutor on different hosts, so where this state lives
decides whether a later task can see it.

A phase never chooses the place itself: it calls :func:`put`, :func:`get` and
:func:`require` with the name of the state, and the backend the caller lent in
``ctx.collaborators.wave_state`` decides. The wave DAG lends the store (one database
every worker reaches, ``orchestration.tasks``); a phase called directly (the lab, a
test, one host) gets :class:`FileWaveState`, the JSON files of the artifacts folder.

The guard: a backend is *strict* when the caller knows the producing task has run (the
wave DAG: provision always precedes replication). Then missing state is an error,
:class:`HandoffMissing`, naming the record or file, the wave and the host, and saying
it was probably written on another host; it is never read as empty. A non-strict
backend (a phase called on its own) returns ``None`` and the phase says what default
it used instead.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from migrationbox.fileio import atomic_write_text
from migrationbox.phases.context import PhaseContext, PhaseFailed

#: what provision built (wave scope: every later run of the wave relies on it)
PROVISIONED = "provisioned"
#: the verdict of the final, verified replication (run scope)
REPLICATION = "replication"
#: one replication round's figures (run scope, one item per round number)
REPLICATION_ROUND = "replication_round"

#: the producing task of each piece of state (for the messages)
PRODUCERS = {
    PROVISIONED: "the provision phase",
    REPLICATION: "the replicate phase's final, verified sync",
    REPLICATION_ROUND: "an earlier replication round of this run",
}

#: the files of the local backend; the names the artifacts folder always had
FILE_NAMES = {
    PROVISIONED: "provisioned.json",
    REPLICATION: "replicate.json",
    REPLICATION_ROUND: "replicate-rounds.json",
}


def this_host() -> str:
    return socket.gethostname()


@dataclass(frozen=True)
class Handoff:
    """One piece of handed-over state and where it came from."""

    name: str
    payload: Any
    written_by: str | None
    written_at: datetime | None
    where: str  # a file path or a store record, for messages
    seq: int = 0


@dataclass(frozen=True)
class StateKey:
    """Which state: of a wave (``run_id`` None) or of one DAG run of it."""

    estate: str
    wave: int
    name: str
    run_id: str | None = None

    def describe(self) -> str:
        scope = f"run {self.run_id} of " if self.run_id else ""
        return f"{self.name!r} of {scope}{self.estate}/wave-{self.wave:02d}"


class WaveStateStore(Protocol):
    """Where handed-over state lives (the store in a wave DAG, files elsewhere)."""

    #: missing state is an error (the caller knows the producer has run)
    strict: bool

    def put(self, key: StateKey, payload: Any, seq: int = 0) -> Handoff: ...

    def get(self, key: StateKey, seq: int = 0) -> Handoff | None: ...

    def items(self, key: StateKey) -> list[Handoff]: ...

    def delete(self, key: StateKey) -> int: ...

    def where(self, key: StateKey) -> str: ...


class HandoffMissing(PhaseFailed):
    """State an earlier task of the wave wrote is not where this task looks for it."""

    def __init__(self, phase: str, key: StateKey, where: str, hint: str,
                 written_on: str | None = None):
        producer = PRODUCERS.get(key.name, "an earlier task")
        if written_on and written_on != this_host():
            ran = f"which ran on host {written_on}, not on this one"
        elif written_on:
            ran = "which ran on this host"
        else:
            ran = "which ran before this task, possibly on another host"
        super().__init__(
            phase,
            f"{key.describe()} is missing: no {where} (this task runs on host "
            f"{this_host()}). It is written by {producer}, {ran}; {hint} Refusing to go "
            "on with an empty value instead.",
            {"missing": key.name, "where": where, "wave": key.wave, "run_id": key.run_id,
             "host": this_host(), "written_on": written_on},
        )
        self.written_on = written_on
        self.key = key
        self.where = where


@dataclass
class FileWaveState:
    """JSON files in the artifacts folder: the wave's folder for wave-scoped state, the
    run's folder for run-scoped state. Only one host sees them (unless the folder is
    shared storage), which is why the wave DAG does not use this backend."""

    artifacts_dir: Path
    strict: bool = False
    #: the host the producing task ran on, when the caller can tell (the wave DAG reads
    #: it from the store's phase runs), for the missing-state message
    producer_host: Callable[[StateKey], str | None] | None = None
    hint: str = field(default=(
        "the artifacts folder is local to each worker host, so a task on another host "
        "does not see it: put the artifacts folder on shared storage, or run the wave "
        "with the store-backed wave state (the wave DAG does)."))

    def path(self, key: StateKey) -> Path:
        folder = self.artifacts_dir / key.estate / f"wave_{key.wave:02d}"
        if key.run_id is not None:
            folder = folder / _safe(key.run_id)
        return folder / FILE_NAMES.get(key.name, f"{key.name}.json")

    def where(self, key: StateKey) -> str:
        return f"file {self.path(key)}"

    def _items_file(self, key: StateKey) -> bool:
        return key.name == REPLICATION_ROUND

    def _read(self, path: Path) -> Any:
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except ValueError as exc:
            raise PhaseFailed("handoff", f"{path} is not valid JSON ({exc}); it was "
                                         "written by an earlier task: re-run that task") from exc

    def _write(self, path: Path, payload: Any) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps(payload, indent=2, sort_keys=True, default=str))

    def put(self, key: StateKey, payload: Any, seq: int = 0) -> Handoff:
        path = self.path(key)
        now = datetime.now(UTC)
        if self._items_file(key):
            history = self._read(path)
            history = [h for h in history if h.get("round") != seq] \
                if isinstance(history, list) else []
            stamped = {**payload, "round": seq, "written_by": this_host()}
            history = sorted([*history, stamped], key=lambda h: int(h.get("round", 0)))
            self._write(path, history)
            return Handoff(key.name, stamped, this_host(), now, str(path), seq)
        stamped = {**payload, "written_by": this_host()} if isinstance(payload, dict) \
            else payload
        self._write(path, stamped)
        return Handoff(key.name, stamped, this_host(), now, str(path), seq)

    def get(self, key: StateKey, seq: int = 0) -> Handoff | None:
        if self._items_file(key):
            return next((h for h in self.items(key) if h.seq == seq), None)
        path = self.path(key)
        payload = self._read(path)
        if payload is None:
            return None
        host = payload.get("written_by") if isinstance(payload, dict) else None
        return Handoff(key.name, payload, host, _mtime(path), str(path), seq)

    def items(self, key: StateKey) -> list[Handoff]:
        path = self.path(key)
        history = self._read(path)
        if not isinstance(history, list):
            return []
        return [Handoff(key.name, h, h.get("written_by"), None, str(path),
                        int(h.get("round", 0))) for h in history if isinstance(h, dict)]

    def delete(self, key: StateKey) -> int:
        path = self.path(key)
        if path.exists():
            path.unlink()
            return 1
        return 0


def _mtime(path: Path) -> datetime | None:
    try:
        return datetime.fromtimestamp(path.stat().st_mtime, UTC)
    except OSError:
        return None


def _safe(value: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in value)


def backend(ctx: PhaseContext) -> WaveStateStore:
    """The backend the caller lent, else the non-strict local files."""
    lent = ctx.collaborators.wave_state
    return lent if lent is not None else FileWaveState(ctx.artifacts_dir)


def key(ctx: PhaseContext, name: str, *, run_scoped: bool) -> StateKey:
    return StateKey(ctx.estate, ctx.wave_number, name, ctx.run_id if run_scoped else None)


def put(ctx: PhaseContext, name: str, payload: Any, *, run_scoped: bool,
        seq: int = 0) -> Handoff:
    return backend(ctx).put(key(ctx, name, run_scoped=run_scoped), payload, seq)


def get(ctx: PhaseContext, name: str, *, run_scoped: bool, seq: int = 0) -> Handoff | None:
    return backend(ctx).get(key(ctx, name, run_scoped=run_scoped), seq)


def items(ctx: PhaseContext, name: str, *, run_scoped: bool) -> list[Handoff]:
    return backend(ctx).items(key(ctx, name, run_scoped=run_scoped))


def delete(ctx: PhaseContext, name: str, *, run_scoped: bool) -> int:
    return backend(ctx).delete(key(ctx, name, run_scoped=run_scoped))


def strict(ctx: PhaseContext) -> bool:
    return bool(backend(ctx).strict)


def missing(ctx: PhaseContext, phase: str, name: str, *, run_scoped: bool,
            detail: str = "") -> HandoffMissing:
    """The error for state that is not there (``detail``: more of what was looked for)."""
    store = backend(ctx)
    k = key(ctx, name, run_scoped=run_scoped)
    hint = getattr(store, "hint", "")
    where = store.where(k) + (f" ({detail})" if detail else "")
    lookup = getattr(store, "producer_host", None)
    written_on = None
    if lookup is not None:
        try:
            written_on = lookup(k)
        except Exception:  # the message must not fail for want of a detail
            written_on = None
    return HandoffMissing(phase, k, where, hint, written_on)


def require(ctx: PhaseContext, phase: str, name: str, *, run_scoped: bool,
            seq: int = 0) -> Handoff | None:
    """The state, or ``HandoffMissing`` when the backend is strict; ``None`` (missing,
    not strict: a phase called on its own) lets the caller choose a stated default."""
    found = get(ctx, name, run_scoped=run_scoped, seq=seq)
    if found is None and strict(ctx):
        raise missing(ctx, phase, name, run_scoped=run_scoped,
                      detail=f"item {seq}" if seq else "")
    return found
