"""Task callables of the wave DAGs: thin adapters from Airflow's context to phase code.

Each callable loads the pinned plan version from the store, builds a ``PhaseContext`` from
the run's conf, runs the phase, and records start, end and outcome in the store (phase
runs and progress events), so that the demo, reports and the Teams/Jira integrations can
follow a wave without reading Airflow's database. Phase modules are imported lazily:
this module is imported at DAG-parse time.
"""

from __future__ import annotations

import importlib
import logging
from typing import Any

log = logging.getLogger("migrationbox.tasks")

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
    """A ``PhaseContext`` for this task: plan from the store, options from the run conf."""
    from migrationbox.config import artifacts_dir
    from migrationbox.orchestration.runconf import parse_run_conf
    from migrationbox.phases.context import PhaseContext
    from migrationbox.store import repository
    from migrationbox.store.db import session_scope

    dag_run = context["dag_run"]
    conf = parse_run_conf(dag_run.conf)
    with session_scope() as session:
        plan = repository.get_plan(session, estate, plan_version)
        if plan is None:
            raise LookupError(
                f"plan {estate} v{plan_version} is not in the store; run "
                f"`migrationbox plan` again or remove the stale spec"
            )
        endpoints = [
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
    options: dict[str, Any] = conf.phase_options()
    if endpoints:
        options["endpoints"] = endpoints
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

    options["on_resource"] = on_resource
    options["on_progress"] = lambda message, data=None: _event(
        estate, wave, run_id, context["ti"].task_id, "progress", message, data or {}
    )
    return PhaseContext(
        plan=plan,
        wave_number=wave,
        run_id=run_id,
        dry_run=conf.dry_run,
        artifacts_dir=artifacts_dir(),
        options=options,
        log=logging.getLogger(f"migrationbox.phase.{context['ti'].task_id}"),
    )


def _event(estate, wave, run_id, phase, kind, message, data) -> None:
    from migrationbox.store import repository
    from migrationbox.store.db import session_scope

    with session_scope() as session:
        repository.add_event(
            session, estate=estate, wave=wave, run_id=run_id, phase=phase, kind=kind,
            message=message, data=data,
        )


def run_phase(phase_name: str, estate: str, wave: int, plan_version: int, **context: Any):
    """Run one phase, recording it; a ``PhaseFailed`` fails the task without retries."""
    from airflow.sdk.exceptions import AirflowFailException

    from migrationbox.phases.context import PhaseFailed
    from migrationbox.store import repository
    from migrationbox.store.db import session_scope

    module_name, func_name = PHASES[phase_name]
    func = getattr(importlib.import_module(module_name), func_name)
    ctx = build_context(estate, wave, plan_version, context)
    run_id = ctx.run_id
    with session_scope() as session:
        repository.record_phase_start(
            session, estate=estate, plan_version=plan_version, wave=wave,
            dag_run_id=run_id, phase=phase_name,
        )
    _event(estate, wave, run_id, phase_name, "phase_started",
           f"{phase_name} started{' (dry run)' if ctx.dry_run else ''}", {})
    try:
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
            phase=phase_name, status=status, summary=summary, details=details,
        )
    _event(estate, wave, run_id, phase_name, f"phase_{status}", f"{phase_name}: {summary}",
           {"status": status})


def gate(check: str, estate: str, wave: int, plan_version: int, **context: Any) -> bool:
    """Sensor callable: ``True`` when the named condition holds."""
    from migrationbox.orchestration import gates

    ctx = build_context(estate, wave, plan_version, context)
    ok, why = getattr(gates, check)(ctx, context)
    if ok:
        _event(estate, wave, ctx.run_id, check, "gate_passed", f"gate {check}: {why}", {})
    else:
        log.info("gate %s not yet: %s", check, why)
    return ok


def choose_rollback_path(estate: str, wave: int, plan_version: int, **context: Any) -> str:
    """Branch of the rollback group: automatic before 100 % on the target, else a gate."""
    from migrationbox.phases.cutover import rollback_requires_approval

    ctx = build_context(estate, wave, plan_version, context)
    needs, why = rollback_requires_approval(ctx)
    _event(estate, wave, ctx.run_id, "rollback", "rollback_started",
           f"rolling back: {why}", {"needs_approval": needs})
    return "rollback.approve_rollback" if needs else "rollback.restore_dns"


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
