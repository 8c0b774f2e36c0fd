"""A wave run's reports, on whichever host wrote them: published after each task, and
read back from the local artifacts folder or from shared storage.

Each wave task writes its reports (preflight's report, provision's Terraform, the
cutover's steps, validation evidence, ...) into the run's folder of the local artifacts
folder, ``<artifacts>/<estate>/wave_NN/<run>/``. Under the CeleryExecutor those tasks run
on different workers, possibly on different hosts, so no single folder holds them all.
With ``shared_root`` set, :func:`published` (wrapped around every phase by the wave
DAG's ``run_phase``) uploads what the task wrote or changed to
``<shared_root>/artifacts/<estate>/wave_NN/<run>/...`` when it ends, whether the phase
succeeded or failed (a failed preflight's report is the one people need). Only the
task's own files are uploaded: a host's older copy of a report another host rewrote
since (a retry that ran elsewhere) is never sent back over the newer one. A retried
task rewrites its reports and uploads them again, replacing the objects.

Readers (:func:`list_runs`, :func:`list_files`, :func:`report_path`; the
``migrationbox reports`` command) see the union of the local folder and shared storage;
a file that is in shared storage is read in its shared version (fetched into
``<home>/shared-cache/artifacts/...`` when this host has no current copy), a file that
is only local (written before ``shared_root`` was set, or the embedded default) from the
artifacts folder. Without ``shared_root`` everything is as before: local files only.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from migrationbox import shared_files
from migrationbox.errors import NotFoundError

if TYPE_CHECKING:
    from migrationbox.phases.context import PhaseContext

log = logging.getLogger("migrationbox.run_reports")

#: key prefix of the run reports below the shared root
PREFIX = "artifacts"


class ReportMissing(NotFoundError):
    """The report named is neither in the local artifacts folder nor in shared storage."""


def run_folder_name(run_id: str) -> str:
    """The run's folder name (the phase context's own rule)."""
    from migrationbox.phases.context import _safe

    return _safe(run_id)


def wave_relative(estate: str, wave: int) -> str:
    return f"{estate}/wave_{wave:02d}"


def run_relative(estate: str, wave: int, run_id: str) -> str:
    """``<estate>/wave_NN/<run folder>``: the run's path below the artifacts folder and
    (under ``artifacts/``) below the shared root."""
    return f"{wave_relative(estate, wave)}/{run_folder_name(run_id)}"


def _artifacts() -> Path:
    from migrationbox.config import artifacts_dir

    return artifacts_dir()


def publish_run(folder: Path, relative: list[str], run_rel: str,
                shared: shared_files.SharedFiles) -> list[shared_files.SharedObject]:
    """Upload the run folder's files ``relative`` to ``artifacts/<run_rel>/...``."""
    return shared_files.publish_files(shared, folder, relative,
                                      shared_files.key_of(PREFIX, run_rel))


@contextlib.contextmanager
def published(ctx: PhaseContext) -> Iterator[None]:
    """Around one task's phase: afterwards (success or failure) upload the files the
    phase wrote or changed in the run's folder, when ``shared_root`` is set.

    A publication failure after a successful phase fails the task (its retry runs the
    idempotent phase again and publishes again); after a failed phase it is logged and
    the phase's own error is what the task fails with."""
    shared = shared_files.configured()
    if shared is None:
        yield
        return
    run_rel = run_relative(ctx.plan.estate, ctx.wave_number, ctx.run_id)
    folder = Path(ctx.artifacts_dir) / run_rel
    before = shared_files.snapshot(folder)
    try:
        yield
    except BaseException:
        try:
            _publish_changed(folder, before, run_rel, shared)
        except Exception:
            log.exception("the reports of the failed phase could not be published to %s",
                          shared.root.uri(f"{PREFIX}/{run_rel}"))
        raise
    _publish_changed(folder, before, run_rel, shared)


def _publish_changed(folder: Path, before: dict[str, tuple[int, int]], run_rel: str,
                     shared: shared_files.SharedFiles) -> None:
    changed = shared_files.changed_since(folder, before)
    if not changed:
        return
    done = publish_run(folder, changed, run_rel, shared)
    log.info("published %d report file(s) to %s", len(done),
             shared.root.uri(f"{PREFIX}/{run_rel}"))


# ---------------------------------------------------------------------------- reading


@dataclass(frozen=True)
class ReportFile:
    """One file of a run: its path in the run's folder and where it is (``local``,
    ``shared`` or both)."""

    name: str
    size: int
    local: bool
    shared: bool

    @property
    def where(self) -> str:
        return "+".join(w for w, on in (("local", self.local), ("shared", self.shared)) if on)


def list_runs(estate: str, wave: int) -> list[str]:
    """The run folders of a wave, local and shared."""
    folder = _artifacts() / wave_relative(estate, wave)
    runs = {p.name for p in folder.iterdir() if p.is_dir()} if folder.is_dir() else set()
    shared = shared_files.configured()
    if shared is not None:
        prefix = shared_files.key_of(PREFIX, wave_relative(estate, wave))
        runs |= {o.key[len(prefix) + 1:].split("/", 1)[0] for o in shared.list(prefix)
                 if "/" in o.key[len(prefix) + 1:]}
    return sorted(runs)


def list_files(estate: str, wave: int, run_id: str) -> list[ReportFile]:
    """Every file of one run, from the local artifacts folder and shared storage."""
    run_rel = run_relative(estate, wave, run_id)
    local = shared_files.snapshot(_artifacts() / run_rel)
    remote: dict[str, int] = {}
    shared = shared_files.configured()
    if shared is not None:
        prefix = shared_files.key_of(PREFIX, run_rel)
        remote = {o.key[len(prefix) + 1:]: o.size for o in shared.list(prefix)}
    names = sorted(set(local) | set(remote))
    return [ReportFile(n, remote.get(n, local.get(n, (0, 0))[0]), n in local, n in remote)
            for n in names]


def report_path(estate: str, wave: int, run_id: str, name: str) -> Path:
    """A local path holding the current version of one report: the shared object (a
    host's cached copy, fetched when missing or outdated) when ``shared_root`` is set
    and the object exists, else the local artifacts folder's file.
    :class:`ReportMissing` when neither has it."""
    run_rel = run_relative(estate, wave, run_id)
    name = shared_files.check_key(name)  # no '..': stays inside the run's folder
    local = _artifacts() / run_rel / name
    shared = shared_files.configured()
    if shared is not None:
        key = shared_files.key_of(PREFIX, run_rel, name)
        current = shared.head(key)
        if current is not None:
            if current.etag and shared.cached_etag(key, local) == current.etag:
                return local  # this host wrote (and published) the current version
            cache = shared.state_dir / PREFIX / run_rel / name
            shared.fetch(key, cache, known=current)
            return cache
        where = f"{local} or {shared.root.uri(key)}"
    else:
        where = str(local)
    if local.is_file():
        return local
    raise ReportMissing(f"report {name!r} of {estate} wave {wave} run {run_id!r} is not "
                        f"there ({where})")
