"""Sensor gates between phases: each returns ``(ok, why)`` and is safe to call repeatedly.

Gates re-check the world (the store, the cloud API, the data plane) rather than trusting
what the previous task said, so a gate still holds after retries, clears and restarts.
"""

from __future__ import annotations

from typing import Any

from migrationbox.phases.context import PhaseContext, PhaseFailed


def previous_wave_completed(ctx: PhaseContext, context: dict[str, Any]) -> tuple[bool, str]:
    from migrationbox.orchestration.runconf import parse_run_conf
    from migrationbox.store import repository
    from migrationbox.store.db import session_scope

    deps = ctx.wave.depends_on_waves or ([ctx.wave_number - 1] if ctx.wave_number > 1 else [])
    if not deps:
        return True, "first wave: nothing to wait for"
    if parse_run_conf(context["dag_run"].conf).ignore_previous_wave:
        return True, f"conf ignore_previous_wave: not waiting for waves {deps}"
    with session_scope() as session:
        statuses = repository.wave_statuses(session, ctx.estate, ctx.plan.version)
    pending = {n: statuses.get(n, "planned") for n in deps if statuses.get(n) != "completed"}
    if pending:
        return False, f"waiting for waves {pending}"
    return True, f"waves {deps} completed"


def instances_running(ctx: PhaseContext, context: dict[str, Any]) -> tuple[bool, str]:
    if ctx.dry_run:
        return True, "dry run: no instances were created"
    from migrationbox.phases._cloud import adapter_for

    adapter = adapter_for(ctx, "instances_running")
    instance_ids = adapter.wave_instance_ids(ctx.estate, ctx.wave_tag)
    if not instance_ids:
        return False, "no instances tagged for this wave yet"
    states = adapter.instances_state(instance_ids)
    not_running = {i: s for i, s in states.items() if s != "running"}
    if not_running:
        return False, f"not running yet: {not_running}"
    return True, f"{len(states)} instance(s) running"


def replication_converged(ctx: PhaseContext, context: dict[str, Any]) -> tuple[bool, str]:
    from migrationbox.phases.replicate import converged

    return converged(ctx)


def smoke_tests_green(ctx: PhaseContext, context: dict[str, Any]) -> tuple[bool, str]:
    from migrationbox.phases import smoke_test

    try:
        result = smoke_test.run(ctx)
    except PhaseFailed as exc:
        return False, str(exc)
    if not result.ok:
        return False, f"{result.summary}: {result.failures}"
    return True, result.summary
