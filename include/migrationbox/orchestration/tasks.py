"""Task callables of the wave DAGs: thin adapters from Airflow's context to phase code.

Each callable loads the pinned plan version from the store, builds a ``PhaseContext`` from
the run's conf (typed phase options, with the site's settings as defaults), the store's
endpoints and the collaborators that record into the store, runs the phase, and records
start, end and outcome in the store (phase runs and progress events), so that the demo,
reports and the Teams/Jira integrations can follow a wave without reading Airflow's
database. A bad run conf or a missing plan fails the task at once, without retries, and
is recorded as a failed phase run saying what was wrong. Phase modules are imported
lazily: this module is imported at DAG-parse time.
"""

from __future__ import annotations

import importlib
import logging
import socket
from pathlib import Path
from typing import Any

from migrationbox.errors import NotFoundError

log = logging.getLogger("migrationbox.tasks")


class PlanMissing(NotFoundError):
    """The plan version a wave DAG was built from is not in the store."""

#: phase name → (module, function)
PHASES: dict[str, tuple[str, str]] = {
    "preflight": ("migrationbox.phases.preflight", "run"),
    "provision": ("migrationbox.phases.provision", "run"),
    "replicate": ("migrationbox.phases.replicate", "run"),
    "configure": ("migrationbox.phases.configure", "run"),
    "smoke_test": ("migrationbox.phases.smoke_test", "run"),
    "cutover": ("migrationbox.phases.cutover", "run"),
    "cutover_rollback": ("migrationbox.phases.cutover", "rollback"),
    "cutover_rollback_approved": ("migrationbox.phases.cutover", "rollback_approved"),
    "validate": ("migrationbox.phases.validate", "run"),
    "decommission": ("migrationbox.phases.validate", "decommission"),
    "teardown": ("migrationbox.phases.teardown", "rollback"),
}


def build_context(estate: str, wave: int, plan_version: int, context: dict[str, Any]):
    """A ``PhaseContext`` for this task: plan and endpoints from the store, options from
    the run conf over the site's settings, collaborators that record into the store.

    Raises ``RunConfError`` (a bad conf), ``PlanMissing``, ``ConfigurationError`` (a bad
    setting), or the endpoint parser's ``ValueError``: input problems no retry can fix.
    """
    from migrationbox import settings
    from migrationbox.config import artifacts_dir
    from migrationbox.endpoints import parse_endpoints
    from migrationbox.orchestration.runconf import parse_run_conf
    from migrationbox.phases.context import Collaborators, PhaseContext
    from migrationbox.store import repository
    from migrationbox.store.db import session_scope

    dag_run = context["dag_run"]
    conf = parse_run_conf(dag_run.conf)
    options = conf.phase_options(settings.run_defaults())
    with session_scope() as session:
        plan = repository.get_plan(session, estate, plan_version)
        if plan is None:
            raise PlanMissing(
                f"plan {estate} v{plan_version} is not in the store; run "
                f"`migrationbox plan` again or remove the stale spec"
            )
        stored = [
            {
                "server_id": e.server_id,
                "kind": e.kind,
                "name": e.name,
                "source_uri": e.source_uri,
                "target_uri": e.target_uri,
                "details": e.details or {},
            }
            for e in repository.endpoints(session, estate)
        ]
    endpoints = parse_endpoints(stored, f"store endpoints of {estate}") if stored else None
    run_id = dag_run.run_id

    def on_resource(resource_type: str, resource_id: str, name: str, tags: dict[str, str]):
        with session_scope() as s:
            repository.record_cloud_resource(
                s,
                estate=estate,
                wave=wave,
                resource_type=resource_type,
                resource_id=resource_id,
                name=name,
                tags=tags,
                created_by_run=run_id,
            )

    def on_resource_deleted(resource_type: str, resource_id: str, name: str,
                            tags: dict[str, str]) -> None:
        with session_scope() as s:
            repository.mark_resource_deleted(s, estate=estate, resource_type=resource_type,
                                             resource_id=resource_id)

    collaborators = Collaborators(
        on_progress=lambda message, data=None: _event(
            estate, wave, run_id, context["ti"].task_id, "progress", message, data or {}
        ),
        on_resource=on_resource,
        on_resource_deleted=on_resource_deleted,
        wave_state=wave_state_backend(artifacts_dir()),
    )
    return PhaseContext(
        plan=plan,
        wave_number=wave,
        run_id=run_id,
        dry_run=conf.dry_run,
        artifacts_dir=artifacts_dir(),
        options=options,
        collaborators=collaborators,
        endpoints=endpoints,
        log=logging.getLogger(f"migrationbox.phase.{context['ti'].task_id}"),
    )


def wave_state_backend(artifacts: Path | None = None):
    """Where this wave's tasks hand state to each other (``phases.handoff``): the
    store, which every worker host reaches (``orchestration.wave_state``), not the
    worker's local artifacts folder (``artifacts``: only to import state an older
    MigrationBox left there, see ``orchestration.wave_state``). Strict: in a wave DAG every
    producer runs before its consumers, so missing state is an error naming the record,
    never an empty value."""
    from migrationbox.orchestration.wave_state import StoreWaveState
    from migrationbox.phases.handoff import FileWaveState

    legacy = FileWaveState(artifacts) if artifacts is not None else None
    return StoreWaveState(strict=True, legacy=legacy)


#: handed-over state -> the phase run that writes it
_PRODUCER_PHASE = {"provisioned": "provision", "replication": "replicate"}


def producer_host(key) -> str | None:
    """The host the task that wrote ``key`` (a ``handoff.StateKey``) ran on, from the
    store: the phase run's details, or the round's progress event; ``None`` if unknown."""
    from migrationbox.store import repository
    from migrationbox.store.db import session_scope

    with session_scope(read_only=True) as session:
        phase = _PRODUCER_PHASE.get(key.name)
        if phase is not None:
            runs = [r for r in repository.phase_runs(session, key.estate, key.wave,
                                                     key.run_id)
                    if r.phase == phase and r.status == "success"]
            host = runs[-1].details.get("host") if runs else None
            return str(host) if host else None
        hosts = [e.data.get("host") for e in repository.events(session, key.estate, key.wave)
                 if e.dag_run_id == key.run_id and "round" in e.data and e.data.get("host")]
    return str(hosts[-1]) if hosts else None


def context_or_fail(phase_name: str, estate: str, wave: int, plan_version: int,
                    context: dict[str, Any]):
    """``build_context``, or the task fails at once (no retries) with the reason recorded.

    A bad run conf, a missing plan or a bad setting cannot be fixed by retrying: the
    failure is recorded in the store as a failed phase run (and an event) naming what
    was wrong, then ``AirflowFailException`` ends the task.
    """
    from airflow.sdk.exceptions import AirflowFailException

    from migrationbox.errors import MigrationBoxError

    try:
        return build_context(estate, wave, plan_version, context)
    except (MigrationBoxError, ValueError) as exc:  # ValueError: a malformed endpoint row
        run_id = context["dag_run"].run_id
        message = f"{phase_name}: refused before it started: {exc}"
        record_refusal(estate, plan_version, wave, run_id, phase_name, message,
                       type(exc).__name__)
        raise AirflowFailException(message) from exc


def record_refusal(estate: str, plan_version: int, wave: int, run_id: str, phase_name: str,
                   message: str, reason: str) -> None:
    """A failed phase run and an event for a task that could not start; never raises
    (an estate unknown to the store is only logged: the task fails either way)."""
    try:
        _finish(estate, plan_version, wave, run_id, phase_name, "failed", message,
                {"refused": reason})
    except Exception:
        log.exception("could not record the refusal of %s in the store: %s", phase_name,
                      message)


def _event(estate, wave, run_id, phase, kind, message, data) -> None:
    from migrationbox.store import repository
    from migrationbox.store.db import session_scope

    with session_scope() as session:
        repository.add_event(
            session, estate=estate, wave=wave, run_id=run_id, phase=phase, kind=kind,
            message=message, data={**data, "host": socket.gethostname()},
        )


def run_phase(phase_name: str, estate: str, wave: int, plan_version: int, **context: Any):
    """Run one phase, recording it; a ``PhaseFailed`` fails the task without retries."""
    from airflow.sdk.exceptions import AirflowFailException

    from migrationbox.phases.context import PhaseFailed
    from migrationbox.store import repository
    from migrationbox.store.db import session_scope

    module_name, func_name = PHASES[phase_name]
    func = getattr(importlib.import_module(module_name), func_name)
    ctx = context_or_fail(phase_name, estate, wave, plan_version, context)
    run_id = ctx.run_id
    with session_scope() as session:
        repository.record_phase_start(
            session, estate=estate, plan_version=plan_version, wave=wave,
            dag_run_id=run_id, phase=phase_name,
        )
    _event(estate, wave, run_id, phase_name, "phase_started",
           f"{phase_name} started{' (dry run)' if ctx.dry_run else ''}", {})
    from migrationbox.run_reports import published

    try:
        with published(ctx):  # the task's reports, to shared storage when configured
            result = func(ctx)
    except PhaseFailed as exc:
        _finish(estate, plan_version, wave, run_id, phase_name, "failed", str(exc),
                {"details": exc.details})
        raise AirflowFailException(str(exc)) from exc
    except Exception as exc:
        _finish(estate, plan_version, wave, run_id, phase_name, "failed",
                f"{type(exc).__name__}: {exc}", {})
        raise
    status = "success" if result.ok else "failed"
    _finish(estate, plan_version, wave, run_id, phase_name, status, result.summary,
            result.model_dump(mode="json"))
    if not result.ok:
        raise AirflowFailException(f"{phase_name}: {result.summary}: {result.failures}")
    if phase_name == "decommission" and not ctx.dry_run:
        with session_scope() as session:
            repository.set_wave_status(session, estate=estate, plan_version=plan_version,
                                       wave=wave, status="completed")
    return result.model_dump(mode="json")


def _finish(estate, plan_version, wave, run_id, phase_name, status, summary, details) -> None:
    from migrationbox.store import repository
    from migrationbox.store.db import session_scope

    with session_scope() as session:
        repository.record_phase_end(
            session, estate=estate, plan_version=plan_version, wave=wave, dag_run_id=run_id,
            phase=phase_name, status=status, summary=summary,
            details={**details, "host": socket.gethostname()},  # where the task ran
        )
    _event(estate, wave, run_id, phase_name, f"phase_{status}", f"{phase_name}: {summary}",
           {"status": status})


def gate(check: str, estate: str, wave: int, plan_version: int, **context: Any) -> bool:
    """Sensor callable: ``True`` when the named condition holds."""
    from airflow.sdk.exceptions import AirflowFailException

    from migrationbox.orchestration import gates
    from migrationbox.phases.context import PhaseFailed

    ctx = context_or_fail(check, estate, wave, plan_version, context)
    try:
        ok, why = getattr(gates, check)(ctx, context)
    except PhaseFailed as exc:  # e.g. state an earlier task handed over is missing
        record_refusal(estate, plan_version, wave, ctx.run_id, check, str(exc),
                       type(exc).__name__)
        raise AirflowFailException(str(exc)) from exc
    if ok:
        _event(estate, wave, ctx.run_id, check, "gate_passed", f"gate {check}: {why}", {})
    else:
        log.info("gate %s not yet: %s", check, why)
    return ok


def choose_rollback_path(estate: str, wave: int, plan_version: int, **context: Any) -> str:
    """Branch of the rollback group: automatic before 100 % on the target, else a gate."""
    from migrationbox.orchestration.graph import ROLLBACK_APPROVE_TASK_ID, ROLLBACK_RESTORE_TASK_ID
    from migrationbox.phases.cutover import rollback_requires_approval

    ctx = context_or_fail("rollback", estate, wave, plan_version, context)
    needs, why = rollback_requires_approval(ctx)
    _event(estate, wave, ctx.run_id, "rollback", "rollback_started",
           f"rolling back: {why}", {"needs_approval": needs})
    return ROLLBACK_APPROVE_TASK_ID if needs else ROLLBACK_RESTORE_TASK_ID


def keep_source_authoritative(estate: str, wave: int, plan_version: int, **context: Any):
    """After a rollback: the source stays the system of record; say so everywhere."""
    from migrationbox.store import repository
    from migrationbox.store.db import session_scope

    run_id = context["dag_run"].run_id
    with session_scope() as session:
        repository.set_wave_status(session, estate=estate, plan_version=plan_version,
                                   wave=wave, status="rolled_back")
    _event(estate, wave, run_id, "rollback", "rolled_back",
           "traffic is on the source; the source stays authoritative", {})
    return {"wave": wave, "status": "rolled_back"}
