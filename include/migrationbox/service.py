"""Use cases that span packages: load → validate → store → plan → export.

The CLI, the demo, the discovery/planning DAGs and tests call these, so the order of
steps and the all-or-nothing rules live in one place.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from migrationbox.config import plans_dir
from migrationbox.planning.models import PlanDocument, PlanSettings


@dataclass
class PlannedEstate:
    plan: PlanDocument
    spec_path: Path
    quarantined: int
    validation_summary: str


def estate_name_for(path: Path) -> str:
    """Default estate name: the folder (or file stem) name, made safe."""
    stem = path.name if path.is_dir() else path.stem
    safe = "".join(c if c.isalnum() or c in "-_" else "-" for c in stem.lower()).strip("-_")
    return safe or "estate"


def plan_estate(
    path: Path,
    *,
    estate: str | None = None,
    settings: PlanSettings | None = None,
    allow_quarantine: bool = False,
    store: bool = True,
    spec_folder: Path | None = None,
    publish: bool | None = None,
) -> PlannedEstate:
    """Validate the inventory at ``path``, store it, plan it, store and export the plan
    (and publish it to the plans bundle in object storage when ``plans_root`` is set).

    With ``allow_quarantine`` False (the default) any quarantined record stops the run
    before anything is stored: a plan missing servers nobody noticed is worse than none.
    ``publish`` (default: ``store``): publish to ``plans_root`` when it is set; a plan
    that is not stored (``migrationbox plan --no-store``) is not published either, since
    its wave tasks would find no stored plan to read.
    """
    from migrationbox.inventory.models import Estate
    from migrationbox.inventory.validation import InventoryError, validate_inventory
    from migrationbox.orchestration.plans_bundle import publish_if_configured
    from migrationbox.planning.builder import build_plan
    from migrationbox.planning.export import write_wave_spec

    report = validate_inventory(path)
    if report.quarantined and not allow_quarantine:
        raise InventoryError(
            f"{len(report.quarantined)} record(s) quarantined; fix them or pass "
            f"--allow-quarantine to plan the {len(report.valid)} valid ones.\n"
            + report.summary()
        )
    if not report.valid:
        raise InventoryError(f"no valid server records in {path}")
    name = estate or estate_name_for(path)
    est = Estate(name=name, servers=report.valid)
    plan = build_plan(est, settings or PlanSettings())
    if store:
        from migrationbox.store import repository
        from migrationbox.store.db import session_scope

        with session_scope() as session:
            repository.save_estate(session, est)
            plan = repository.save_plan(session, plan)
    folder = spec_folder or plans_dir()
    spec_path = write_wave_spec(plan, folder)
    # with plans_root set the plans bundle lives in object storage: what the local
    # folder now holds for this estate is what every host's bundle must download
    if (store if publish is None else publish):
        publish_if_configured(folder, plan.estate)
    return PlannedEstate(
        plan=plan,
        spec_path=spec_path,
        quarantined=len(report.quarantined),
        validation_summary=report.summary(),
    )
