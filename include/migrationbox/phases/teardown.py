"""Rollback of provision: delete what this wave created in the cloud, and nothing else.

Resources are found by their ``migrationbox:wave`` tag, so the rollback works even if
provision stopped half-way or the store's ledger is behind. The estate's landing zone
(VPC, subnets, private DNS zone) is shared by every wave; it goes too only when no
other wave of the estate still has resources, unless the run conf sets
``teardown.keep_landing_zone``.
The wave's resources in the cloud's database migration service (AWS DMS: tasks,
endpoints, the replication instance and its subnet group, found by the same wave tags)
go first, since its runner sits in the wave's subnets.
A dry run lists what would be deleted.
"""

from __future__ import annotations

from datetime import UTC, datetime

from migrationbox.cloud.base import LANDING_ZONE, TAG_WAVE, CloudResource, landing_zone_tag
from migrationbox.phases import handoff
from migrationbox.phases._cloud import adapter_for, progress, write_json
from migrationbox.phases.context import PhaseContext, PhaseFailed, PhaseResult

PHASE = "teardown"


def _teardown_database_service(ctx: PhaseContext) -> list[str]:
    """Delete the wave's migration-service resources; none for a cloud without one."""
    from migrationbox.cloud.database_service import NoDatabaseService, get_database_service

    settings = ctx.plan.settings
    try:
        service = get_database_service(settings.cloud, ctx.aws_conn_id, settings.region,
                                       **ctx.options.cloud.database_service_options())
    except NoDatabaseService:
        return []
    return service.teardown(ctx.estate, ctx.wave_number)


def _brief(resources: list[CloudResource]) -> list[str]:
    return [f"{r.type}:{r.name or r.id}" for r in resources]


def rollback(ctx: PhaseContext) -> PhaseResult:
    adapter = adapter_for(ctx, PHASE)
    estate = ctx.estate
    lz = landing_zone_tag(estate)
    if ctx.dry_run:
        doomed = adapter.resources_by_tag(estate, ctx.wave_number)
        return PhaseResult(
            phase=PHASE, ok=True,
            summary=f"dry run: would delete {len(doomed)} resources tagged {ctx.wave_tag}",
            details={"dry_run": True, "would_delete": _brief(doomed)},
        )
    progress(ctx, f"tearing down everything tagged {ctx.wave_tag}")
    try:
        service_deleted = _teardown_database_service(ctx)
        if service_deleted:
            progress(ctx, f"database migration service: deleted {', '.join(service_deleted)}")
        deleted = adapter.teardown(estate, ctx.wave_number)
        landing: list[CloudResource] = []
        remaining = [r for r in adapter.resources_by_tag(estate) if r.tags.get(TAG_WAVE) != lz]
        keep = ctx.options.teardown.keep_landing_zone
        if not remaining and not keep:
            landing = adapter.teardown(estate, LANDING_ZONE)
    except Exception as exc:
        raise PhaseFailed(
            PHASE,
            f"teardown of {ctx.wave_tag} stopped: {type(exc).__name__}: {exc}. Re-run it: "
            f"it only looks at what is still tagged {ctx.wave_tag}",
        ) from exc
    on_deleted = ctx.collaborators.on_resource_deleted
    if on_deleted is not None:
        for res in deleted + landing:
            on_deleted(res.type, res.id, res.name, res.tags)
    # what provision handed over describes resources that are gone now
    handoff.delete(ctx, handoff.PROVISIONED, run_scoped=False)
    report = {
        "estate": estate, "wave": ctx.wave_number, "run_id": ctx.run_id,
        "finished_at": datetime.now(UTC).isoformat(),
        "deleted": [{"type": r.type, "id": r.id, "name": r.name} for r in deleted],
        "landing_zone_deleted": [{"type": r.type, "id": r.id, "name": r.name} for r in landing],
        "other_waves_remaining": len(remaining),
        "database_service_deleted": service_deleted,
    }
    path = write_json(ctx.run_artifacts() / "teardown.json", report)
    return PhaseResult(
        phase=PHASE,
        ok=True,
        summary=(f"deleted {len(deleted)} resources of {ctx.wave_tag}"
                 + (f" and the landing zone ({len(landing)})" if landing else
                    f"; landing zone kept ({len(remaining)} resources of other waves)")),
        details={"deleted": _brief(deleted), "landing_zone_deleted": _brief(landing),
                 "database_service_deleted": service_deleted, "report": str(path)},
    )


run = rollback
