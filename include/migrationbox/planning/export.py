"""Plan serialisation: the full plan as JSON, and the compact plan spec (wave spec).

The wave spec is what the wave-DAG loaders read at *parse time*, continuously, so it
holds only what building the DAGs needs (one small record per wave, no per-server
data): a 10,000-server plan still parses in milliseconds. Tasks read server details
from the stored plan at run time. Each spec gets its estate's loader DAG file next to
it (``<plans>/dags/migrate__<estate>.py``, see ``orchestration.wave_dag``).

``plan_from_json`` checks the plan's internal references as well as its schema: a
plan whose waves name servers it does not contain is refused with the wave and the
server named, rather than failing half-way through a migration.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from migrationbox.errors import InputError
from migrationbox.fileio import atomic_write_text
from migrationbox.orchestration.spec import (
    SCHEMA_VERSION,
    PlanSpec,
    WaveSpec,
    loader_path,
    loader_source,
    migrationbox_version,
    spec_files,
)
from migrationbox.planning.models import PlanDocument


class PlanIntegrityError(InputError):
    """A plan that is valid JSON but refers to things it does not contain."""


def check_plan(plan: PlanDocument) -> None:
    """Raise :class:`PlanIntegrityError` naming the first broken reference."""
    server_ids = [s.server_id for s in plan.servers]
    known = set(server_ids)
    if len(known) != len(server_ids):
        dupes = sorted(s for s, n in Counter(server_ids).items() if n > 1)
        raise PlanIntegrityError(f"plan {plan.estate} v{plan.version}: servers: "
                                 f"duplicate server_id {dupes[0]!r}")
    groups = {g.group_id: g for g in plan.move_groups}
    for g in plan.move_groups:
        for s in g.server_ids:
            if s not in known:
                raise PlanIntegrityError(f"plan {plan.estate} v{plan.version}: move_groups"
                                         f"[{g.group_id}].server_ids names missing server {s!r}")
    for s in plan.servers:
        if s.move_group not in groups:
            raise PlanIntegrityError(f"plan {plan.estate} v{plan.version}: servers[{s.server_id}]"
                                     f".move_group names missing move group {s.move_group!r}")
        for d in s.depends_on:
            if d not in known:
                raise PlanIntegrityError(f"plan {plan.estate} v{plan.version}: servers"
                                         f"[{s.server_id}].depends_on names missing server {d!r}")
    numbers = [w.number for w in plan.waves]
    if numbers != list(range(1, len(numbers) + 1)):
        raise PlanIntegrityError(f"plan {plan.estate} v{plan.version}: waves must be numbered "
                                 f"1..{len(numbers)} in order, got {numbers}")
    placed: dict[str, int] = {}
    for w in plan.waves:
        for s in w.server_ids:
            if s not in known:
                raise PlanIntegrityError(f"plan {plan.estate} v{plan.version}: waves[{w.number}]"
                                         f".server_ids names missing server {s!r}")
            if s in placed:
                raise PlanIntegrityError(f"plan {plan.estate} v{plan.version}: server {s!r} is in "
                                         f"waves {placed[s]} and {w.number}")
            placed[s] = w.number
        for g in w.move_groups:
            if g not in groups:
                raise PlanIntegrityError(f"plan {plan.estate} v{plan.version}: waves[{w.number}]"
                                         f".move_groups names missing move group {g!r}")
        for d in w.depends_on_waves:
            if not 1 <= d < w.number:
                raise PlanIntegrityError(f"plan {plan.estate} v{plan.version}: waves[{w.number}]"
                                         f".depends_on_waves: {d} is not an earlier wave")


def plan_to_json(plan: PlanDocument) -> str:
    """The full plan as indented JSON (stable key order: the models' field order)."""
    return plan.model_dump_json(indent=2)


def plan_from_json(text: str | bytes) -> PlanDocument:
    """Parse and check a plan exported by :func:`plan_to_json`.

    Raises ``ValueError`` (pydantic's ``ValidationError`` names the field path) or
    :class:`PlanIntegrityError` (names the wave / server).
    """
    try:
        plan = PlanDocument.model_validate_json(text)
    except ValidationError as exc:
        raise ValueError(f"not a valid plan document: {exc}") from exc
    check_plan(plan)
    return plan


def plan_spec(plan: PlanDocument) -> PlanSpec:
    """The compact plan spec the wave-DAG file builds DAGs from (one record per wave).

    Built as the reader's own model, so the writer cannot write a field the reader does
    not know, and validated on the way out (a plan whose waves depend on later waves is
    refused here, not at the next parse).
    """
    live = {s.server_id: s.live for s in plan.servers}
    return PlanSpec(
        schema_version=SCHEMA_VERSION,
        written_by=migrationbox_version(),
        estate=plan.estate,
        version=plan.version,
        created_at=plan.created_at.isoformat(),
        waves=[
            WaveSpec(
                number=w.number,
                name=w.name,
                server_count=len(w.server_ids),
                environment=w.environment,
                needs_approval=w.needs_approval,
                approval_reasons=list(w.approval_reasons),
                live_servers=[s for s in w.server_ids if live.get(s)],
                predicted_monthly_usd=w.predicted_monthly_usd,
                depends_on_waves=list(w.depends_on_waves),
                estimated_hours=w.estimated_hours,
            )
            for w in plan.waves
        ],
    )


def wave_spec(plan: PlanDocument) -> dict[str, Any]:
    """:func:`plan_spec` as the JSON-ready dict that is written."""
    return plan_spec(plan).model_dump(mode="json")


def _write_if_changed(target: Path, text: str) -> Path:
    """Atomic (temp file in the same folder, fsync, rename) because the DAG processor may
    read the file at any moment and must never see half of it; untouched when the
    content is the same so that re-running planning does not make Airflow re-parse."""
    if target.exists() and target.read_text(encoding="utf-8") == text:
        return target
    # the DAG processor may run as another user: readable by all
    return atomic_write_text(target, text, mode=0o644)


def write_estate_loader(folder: Path, estate: str) -> Path:
    """Write ``<folder>/dags/migrate__<estate>.py``, the estate's loader DAG file in the
    plans DAG bundle (``orchestration.spec.loader_source``); untouched if unchanged."""
    return _write_if_changed(loader_path(Path(folder), estate), loader_source(estate))


def ensure_loaders(folder: Path) -> list[Path]:
    """A loader for every spec in ``folder`` that has none (specs exported before loaders
    existed); returns the loaders written. Named by the spec's file, which is what a
    loader reads back: a spec whose name is not an estate name gets no loader."""
    written = []
    for spec in spec_files(Path(folder)):
        target = loader_path(Path(folder), spec.stem)
        if not target.exists():
            try:
                written.append(write_estate_loader(folder, spec.stem))
            except InputError:
                continue
    return written


def write_wave_spec(plan: PlanDocument, folder: Path) -> Path:
    """Write ``<folder>/<estate>.json`` and the estate's loader ``<folder>/dags/
    migrate__<estate>.py``; each is written atomically and left untouched if unchanged.

    The spec first, so that a new loader never looks for a spec that is not there yet.
    """
    if not plan.waves:
        raise ValueError(f"plan {plan.estate} v{plan.version} has no waves: no wave spec to write")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    target = _write_if_changed(folder / f"{plan.estate}.json", plan_spec(plan).to_json())
    write_estate_loader(folder, plan.estate)
    return target
