"""Reading and writing the store: small functions that take a ``Session``.

The caller owns the transaction (usually ``db.session_scope()``); each write function
runs inside a savepoint, so a function that raises leaves nothing of its own behind even
when the caller catches the error and carries on with the same session. Every write is
idempotent on a natural key (an upsert), because Airflow retries tasks and re-runs DAGs.

Reads of an unknown estate return ``None`` or an empty list; writes that need an estate
raise :class:`UnknownEstateError`. Nothing returned is an ORM object (see ``records``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from enum import StrEnum
from typing import Any, TypeVar

from pydantic_core import to_jsonable_python
from sqlalchemy import Select, delete, func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from migrationbox.errors import InputError
from migrationbox.inventory.models import Estate, ServerRecord
from migrationbox.planning.models import PlanDocument
from migrationbox.store.models import (
    ApprovalDecision,
    ApprovalRow,
    Base,
    CloudResourceRow,
    EndpointKind,
    EstateRow,
    MigrationEventRow,
    MoveGroupRow,
    PhaseRunRow,
    PhaseStatus,
    PlanRow,
    PlanStatus,
    ServerEndpointRow,
    ServerRow,
    WaveRow,
    WaveStateRow,
    WaveStatus,
    utcnow,
)
from migrationbox.store.records import (
    Approval,
    CloudResource,
    Endpoint,
    EstateSummary,
    MigrationEvent,
    PhaseRun,
    PlanSummary,
    WaveRecord,
    WaveState,
)

__all__ = [
    "DuplicateServersError",
    "PlanNotFoundError",
    "StoreError",
    "UnknownEstateError",
    "UnknownServersError",
    "add_event",
    "approvals",
    "cloud_resources",
    "delete_wave_state",
    "endpoints",
    "events",
    "get_estate",
    "get_plan",
    "get_wave_state",
    "list_estates",
    "list_plans",
    "live_downtimes",
    "mark_resource_deleted",
    "phase_runs",
    "put_wave_state",
    "record_approval",
    "record_cloud_resource",
    "record_phase_end",
    "record_phase_start",
    "replace_server_endpoints",
    "save_estate",
    "save_plan",
    "server_ids",
    "set_wave_status",
    "upsert_endpoint",
    "wave_state_items",
    "wave_statuses",
    "waves",
]

_M = TypeVar("_M", bound=Base)
_LIST_LIMIT = 50


# --------------------------------------------------------------------------- errors


class StoreError(InputError):
    """Input the store refuses; the message names the record and field."""


class UnknownEstateError(StoreError, LookupError):
    def __init__(self, estate: str, what: str = "this operation"):
        super().__init__(
            f"estate {estate!r} is not in the store (needed by {what}); "
            "store it first with `migrationbox plan` or repository.save_estate"
        )
        self.estate = estate


class PlanNotFoundError(StoreError, LookupError):
    pass


class DuplicateServersError(StoreError):
    def __init__(self, estate: str, duplicates: dict[str, int]):
        listed = ", ".join(f"{sid!r} x{n}" for sid, n in sorted(duplicates.items()))
        super().__init__(
            f"estate {estate!r}: servers[].server_id must be unique; duplicated: {listed}. "
            "Nothing was stored."
        )
        self.estate = estate
        self.duplicates = duplicates


class UnknownServersError(StoreError):
    """A plan names servers that the stored estate does not have."""

    def __init__(self, estate: str, missing: dict[str, list[str]]):
        items = sorted(missing.items())
        shown = [f"{sid!r} (in {', '.join(where)})" for sid, where in items[:_LIST_LIMIT]]
        more = f" ... and {len(items) - _LIST_LIMIT} more" if len(items) > _LIST_LIMIT else ""
        super().__init__(
            f"plan for estate {estate!r} names {len(items)} server(s) the stored estate does "
            f"not have: {'; '.join(shown)}{more}. Nothing was stored; re-plan from the stored "
            "estate or store the estate that the plan was made from."
        )
        self.estate = estate
        self.server_ids = [sid for sid, _ in items]
        self.missing = dict(items)


# --------------------------------------------------------------------------- helpers


def _check_enum(value: str | StrEnum, enum: type[StrEnum], field: str) -> str:
    raw = value.value if isinstance(value, StrEnum) else value
    allowed = [m.value for m in enum]
    if raw not in allowed:
        raise StoreError(f"{field}: {raw!r} is not one of {', '.join(allowed)}")
    return raw


def _json(value: Any, field: str) -> Any:
    """Turn datetimes, enums, paths and pydantic models into plain JSON values now,
    so a bad value fails here with its field name rather than at flush time."""
    try:
        return to_jsonable_python(value)
    except Exception as exc:
        raise StoreError(f"{field}: value is not JSON-serialisable: {exc}") from exc


def _insert_ignoring_conflict(session: Session, model: type[Base], values: dict[str, Any],
                              key: Iterable[str]) -> None:
    """INSERT unless a row with the same natural key exists (race-free on PG and SQLite)."""
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        session.execute(
            pg_insert(model).values(values).on_conflict_do_nothing(index_elements=list(key))
        )
    elif dialect == "sqlite":
        session.execute(
            sqlite_insert(model).values(values).on_conflict_do_nothing(index_elements=list(key))
        )
    else:  # portable fallback: a savepoint absorbs the duplicate-key error
        try:
            with session.begin_nested():
                session.add(model(**values))
        except IntegrityError:
            pass


def _ensure_row(session: Session, model: type[_M], key: Mapping[str, Any],
                defaults: Mapping[str, Any]) -> tuple[_M, bool]:
    """Return the row with this natural key, locked for update, creating it if needed.

    The boolean says whether this call created it.
    """
    stmt: Select[tuple[_M]] = select(model).filter_by(**key).with_for_update()
    row = session.scalars(stmt).one_or_none()
    if row is not None:
        return row, False
    _insert_ignoring_conflict(session, model, {**defaults, **key}, key)
    return session.scalars(stmt.execution_options(populate_existing=True)).one(), True


def _estate_row(session: Session, name: str, *, lock: bool = False) -> EstateRow | None:
    stmt = select(EstateRow).where(EstateRow.name == name)
    if lock:
        stmt = stmt.with_for_update()
    return session.scalars(stmt).one_or_none()


def _estate_id(session: Session, name: str, what: str) -> int:
    estate_id = session.scalar(select(EstateRow.id).where(EstateRow.name == name))
    if estate_id is None:
        raise UnknownEstateError(name, what)
    return estate_id


def _plan_row(session: Session, estate_id: int, version: int | None) -> PlanRow | None:
    stmt = select(PlanRow).where(PlanRow.estate_id == estate_id)
    if version is None:
        stmt = stmt.order_by(PlanRow.version.desc()).limit(1)
    else:
        stmt = stmt.where(PlanRow.version == version)
    return session.scalars(stmt).first()


# --------------------------------------------------------------------------- estates


def _server_values(server: ServerRecord) -> dict[str, Any]:
    return {
        "server_id": server.server_id,
        "hostname": server.hostname,
        "environment": server.environment.value,
        "role": server.role,
        "record": server.model_dump(mode="json", by_alias=True),
    }


def save_estate(session: Session, estate: Estate) -> int:
    """Store the estate, replacing its servers with exactly these; returns its id.

    Idempotent: saving the same estate twice leaves the same rows. The replacement is
    all-or-nothing (a savepoint), so an error never leaves a half-replaced server list.
    """
    counts = Counter(s.server_id for s in estate.servers)
    duplicates = {sid: n for sid, n in counts.items() if n > 1}
    if duplicates:
        raise DuplicateServersError(estate.name, duplicates)
    values = [_server_values(s) for s in estate.servers]  # serialise before touching the DB
    now = utcnow()
    with session.begin_nested():
        row, _ = _ensure_row(session, EstateRow, {"name": estate.name},
                             {"created_at": now, "updated_at": now})
        session.execute(
            delete(ServerRow).where(ServerRow.estate_id == row.id),
            execution_options={"synchronize_session": False},
        )
        if values:
            session.execute(ServerRow.__table__.insert(),
                            [{"estate_id": row.id, **v} for v in values])
        row.updated_at = now
        session.flush()
    session.expire(row, ["servers"])
    return row.id


def get_estate(session: Session, name: str) -> Estate | None:
    row = _estate_row(session, name)
    if row is None:
        return None
    records = session.scalars(
        select(ServerRow.record).where(ServerRow.estate_id == row.id).order_by(ServerRow.id)
    ).all()
    return Estate(name=row.name, servers=[ServerRecord.model_validate(r) for r in records])


def list_estates(session: Session) -> list[EstateSummary]:
    servers = (
        select(ServerRow.estate_id, func.count().label("n"))
        .group_by(ServerRow.estate_id)
        .subquery()
    )
    plans = (
        select(PlanRow.estate_id, func.count().label("n"), func.max(PlanRow.version).label("v"))
        .group_by(PlanRow.estate_id)
        .subquery()
    )
    rows = session.execute(
        select(EstateRow, servers.c.n, plans.c.n, plans.c.v)
        .outerjoin(servers, servers.c.estate_id == EstateRow.id)
        .outerjoin(plans, plans.c.estate_id == EstateRow.id)
        .order_by(EstateRow.name)
    ).all()
    return [
        EstateSummary(
            name=est.name,
            server_count=n_servers or 0,
            plan_count=n_plans or 0,
            latest_plan_version=latest,
            created_at=est.created_at,
            updated_at=est.updated_at,
        )
        for est, n_servers, n_plans, latest in rows
    ]


# --------------------------------------------------------------------------- plans


def _referenced_servers(plan: PlanDocument) -> dict[str, list[str]]:
    """server_id -> where in the plan it is named (for error messages)."""
    where: dict[str, list[str]] = {}

    def note(sid: str, place: str) -> None:
        places = where.setdefault(sid, [])
        if place not in places:
            places.append(place)

    for server in plan.servers:
        note(server.server_id, "servers")
        for dep in server.depends_on:
            note(dep, f"servers[{server.server_id}].depends_on")
    for group in plan.move_groups:
        for sid in group.server_ids:
            note(sid, f"move_groups[{group.group_id}]")
    for wave in plan.waves:
        for sid in wave.server_ids:
            note(sid, f"waves[{wave.number}]")
    return where


def save_plan(session: Session, plan: PlanDocument) -> PlanDocument:
    """Store the plan as the next version for its estate and return it with that version.

    Refuses (``UnknownServersError``, nothing stored) a plan naming servers that the
    stored estate does not have. Earlier plans still marked ``planned`` become
    ``superseded``.
    """
    with session.begin_nested():
        # Locking the estate row serialises concurrent save_plan calls on PostgreSQL so
        # two planners cannot both take the same version number.
        estate = _estate_row(session, plan.estate, lock=True)
        if estate is None:
            raise UnknownEstateError(plan.estate, "save_plan")
        known = set(session.scalars(select(ServerRow.server_id)
                                    .where(ServerRow.estate_id == estate.id)))
        referenced = _referenced_servers(plan)
        missing = {sid: where for sid, where in referenced.items() if sid not in known}
        if missing:
            raise UnknownServersError(plan.estate, missing)

        latest = session.scalar(
            select(func.max(PlanRow.version)).where(PlanRow.estate_id == estate.id)
        )
        version = (latest or 0) + 1
        data = plan.model_dump(mode="json")
        data["version"] = version
        stored = PlanDocument.model_validate(data)

        session.execute(
            update(PlanRow)
            .where(PlanRow.estate_id == estate.id, PlanRow.status == PlanStatus.planned.value)
            .values(status=PlanStatus.superseded.value),
            execution_options={"synchronize_session": False},
        )
        row = PlanRow(
            estate_id=estate.id,
            version=version,
            created_at=plan.created_at,
            stored_at=utcnow(),
            status=PlanStatus.planned.value,
            settings=data["settings"],
            document=data,
        )
        row.waves = [
            WaveRow(
                number=w.number,
                name=w.name,
                server_count=len(w.server_ids),
                needs_approval=w.needs_approval,
                predicted_monthly_usd=w.predicted_monthly_usd,
                estimated_hours=w.estimated_hours,
                status=WaveStatus.pending.value,
            )
            for w in plan.waves
        ]
        row.move_groups = [
            MoveGroupRow(group_id=g.group_id, server_ids=list(g.server_ids), is_cycle=g.is_cycle)
            for g in plan.move_groups
        ]
        session.add(row)
        session.flush()
    return stored


def get_plan(session: Session, estate: str, version: int | None = None) -> PlanDocument | None:
    """The stored plan of that version, or the latest one when ``version`` is None."""
    estate_id = session.scalar(select(EstateRow.id).where(EstateRow.name == estate))
    if estate_id is None:
        return None
    row = _plan_row(session, estate_id, version)
    return None if row is None else PlanDocument.model_validate(row.document)


def list_plans(session: Session, estate: str) -> list[PlanSummary]:
    counts = (
        select(
            WaveRow.plan_id,
            func.count().label("waves"),
            func.coalesce(func.sum(WaveRow.server_count), 0).label("servers"),
        )
        .group_by(WaveRow.plan_id)
        .subquery()
    )
    rows = session.execute(
        select(PlanRow.version, PlanRow.status, PlanRow.created_at, PlanRow.stored_at,
               counts.c.waves, counts.c.servers)
        .join(EstateRow, EstateRow.id == PlanRow.estate_id)
        .outerjoin(counts, counts.c.plan_id == PlanRow.id)
        .where(EstateRow.name == estate)
        .order_by(PlanRow.version)
    ).all()
    return [
        PlanSummary(estate=estate, version=v, status=s, created_at=c, stored_at=st,
                    wave_count=w or 0, server_count=n or 0)
        for v, s, c, st, w, n in rows
    ]


def _wave_record(estate: str, version: int, w: WaveRow) -> WaveRecord:
    return WaveRecord(
        estate=estate, plan_version=version, number=w.number, name=w.name,
        server_count=w.server_count, needs_approval=w.needs_approval,
        predicted_monthly_usd=w.predicted_monthly_usd, estimated_hours=w.estimated_hours,
        status=w.status, updated_at=w.updated_at,
    )


def waves(session: Session, estate: str, plan_version: int | None = None) -> list[WaveRecord]:
    """Wave rows (with their status) of a plan version, latest when ``plan_version`` is None."""
    estate_id = session.scalar(select(EstateRow.id).where(EstateRow.name == estate))
    if estate_id is None:
        return []
    plan = _plan_row(session, estate_id, plan_version)
    if plan is None:
        return []
    rows = session.scalars(select(WaveRow).where(WaveRow.plan_id == plan.id)
                           .order_by(WaveRow.number))
    return [_wave_record(estate, plan.version, w) for w in rows]


def wave_statuses(session: Session, estate: str,
                  plan_version: int | None = None) -> dict[int, str]:
    """``{wave number: status}`` of a plan version (latest when None); empty if unknown."""
    return {w.number: w.status for w in waves(session, estate, plan_version)}


def set_wave_status(session: Session, estate: str, wave: int, status: str | WaveStatus,
                    plan_version: int | None = None) -> WaveRecord:
    """Set a wave's status in a plan version (latest when ``plan_version`` is None)."""
    value = _check_enum(status, WaveStatus, "waves.status")
    estate_id = _estate_id(session, estate, "set_wave_status")
    plan = _plan_row(session, estate_id, plan_version)
    if plan is None:
        which = "any plan" if plan_version is None else f"plan version {plan_version}"
        raise PlanNotFoundError(f"estate {estate!r} has no {which}")
    row = session.scalars(
        select(WaveRow).where(WaveRow.plan_id == plan.id, WaveRow.number == wave)
        .with_for_update()
    ).one_or_none()
    if row is None:
        raise PlanNotFoundError(f"estate {estate!r} plan v{plan.version} has no wave {wave}")
    row.status = value
    row.updated_at = utcnow()
    session.flush()
    return _wave_record(estate, plan.version, row)


# --------------------------------------------------------------------------- phase runs


def _phase_run(estate: str, row: PhaseRunRow) -> PhaseRun:
    return PhaseRun(
        estate=estate, plan_version=row.plan_version, wave=row.wave, dag_run_id=row.dag_run_id,
        phase=row.phase, status=row.status, attempts=row.attempts, started_at=row.started_at,
        finished_at=row.finished_at, summary=row.summary, details=dict(row.details or {}),
    )


def record_phase_start(session: Session, *, estate: str, plan_version: int, wave: int,
                       dag_run_id: str, phase: str, started_at: datetime | None = None,
                       details: Mapping[str, Any] | None = None) -> PhaseRun:
    """Mark a phase running. A retry of the same (run, wave, phase) reuses the row,
    counts the attempt and clears the previous outcome."""
    started = started_at or utcnow()
    with session.begin_nested():
        estate_id = _estate_id(session, estate, "record_phase_start")
        row, _ = _ensure_row(
            session, PhaseRunRow,
            {"estate_id": estate_id, "wave": wave, "dag_run_id": dag_run_id, "phase": phase},
            {"plan_version": plan_version, "status": PhaseStatus.running.value,
             "attempts": 0, "started_at": started, "details": {}},
        )
        row.plan_version = plan_version
        row.status = PhaseStatus.running.value
        row.attempts = (row.attempts or 0) + 1
        row.started_at = started
        row.finished_at = None
        row.summary = None
        row.details = _json(dict(details or {}), "phase_runs.details")
        session.flush()
    return _phase_run(estate, row)


def record_phase_end(session: Session, *, estate: str, plan_version: int, wave: int,
                     dag_run_id: str, phase: str, status: str | PhaseStatus,
                     summary: str | None = None, details: Mapping[str, Any] | None = None,
                     finished_at: datetime | None = None) -> PhaseRun:
    """Record a phase's outcome; ``details`` are merged into those given at start.

    Works without a prior start (the row is created with started_at = finished_at).
    """
    value = _check_enum(status, PhaseStatus, "phase_runs.status")
    if value == PhaseStatus.running.value:
        raise StoreError("phase_runs.status: a finished phase cannot be 'running'")
    finished = finished_at or utcnow()
    extra = _json(dict(details or {}), "phase_runs.details")
    with session.begin_nested():
        estate_id = _estate_id(session, estate, "record_phase_end")
        row, _ = _ensure_row(
            session, PhaseRunRow,
            {"estate_id": estate_id, "wave": wave, "dag_run_id": dag_run_id, "phase": phase},
            {"plan_version": plan_version, "status": value, "attempts": 1,
             "started_at": finished, "details": {}},
        )
        row.plan_version = plan_version
        row.status = value
        row.finished_at = finished
        row.summary = summary
        row.details = {**(row.details or {}), **extra}
        session.flush()
    return _phase_run(estate, row)


def phase_runs(session: Session, estate: str, wave: int,
               dag_run_id: str | None = None) -> list[PhaseRun]:
    stmt = (
        select(PhaseRunRow)
        .join(EstateRow, EstateRow.id == PhaseRunRow.estate_id)
        .where(EstateRow.name == estate, PhaseRunRow.wave == wave)
        .order_by(PhaseRunRow.started_at, PhaseRunRow.id)
    )
    if dag_run_id is not None:
        stmt = stmt.where(PhaseRunRow.dag_run_id == dag_run_id)
    return [_phase_run(estate, r) for r in session.scalars(stmt)]


def live_downtimes(session: Session, estate: str, wave: int) -> dict[str, dict[str, Any]]:
    """Per live server of ``wave``: the freeze → target-serving downtime its last
    successful cutover measured (``phases.live``), with when it froze and served.

    Read from the cutover's phase-run details, where ``run_phase`` records the phase
    result; servers that were not migrated live are absent."""
    out: dict[str, dict[str, Any]] = {}
    for run in phase_runs(session, estate, wave):
        if run.phase != "cutover" or run.status != PhaseStatus.success.value:
            continue
        details = run.details.get("details")  # the phase result, as run_phase records it
        details = details if isinstance(details, dict) else run.details
        for sid, info in ((details.get("live") or {}).get("servers") or {}).items():
            out[sid] = {"downtime_s": info.get("downtime_s"),
                        "frozen_at": info.get("frozen_at"),
                        "serving_at": info.get("serving_at"),
                        "serving_check": info.get("serving_check"),
                        "final_delta_bytes": info.get("final_delta_bytes"),
                        "dag_run_id": run.dag_run_id}
    return out


# --------------------------------------------------------------------------- approvals


def _approval(estate: str, row: ApprovalRow) -> Approval:
    return Approval(
        estate=estate, wave=row.wave, dag_run_id=row.dag_run_id, gate=row.gate,
        decision=row.decision, approved_by=row.approved_by, responded_at=row.responded_at,
        comment=row.comment,
    )


def record_approval(session: Session, *, estate: str, wave: int, dag_run_id: str, gate: str,
                    decision: str | ApprovalDecision, approved_by: str | None = None,
                    responded_at: datetime | None = None,
                    comment: str | None = None) -> Approval:
    """Record who answered a gate and how; answering again (a cleared gate) updates it."""
    value = _check_enum(decision, ApprovalDecision, "approvals.decision")
    if responded_at is None and value != ApprovalDecision.pending.value:
        responded_at = utcnow()
    with session.begin_nested():
        estate_id = _estate_id(session, estate, "record_approval")
        row, _ = _ensure_row(
            session, ApprovalRow,
            {"estate_id": estate_id, "wave": wave, "dag_run_id": dag_run_id, "gate": gate},
            {"decision": value},
        )
        row.decision = value
        row.approved_by = approved_by
        row.responded_at = responded_at
        row.comment = comment
        session.flush()
    return _approval(estate, row)


def approvals(session: Session, estate: str, wave: int | None = None,
              dag_run_id: str | None = None) -> list[Approval]:
    stmt = (
        select(ApprovalRow)
        .join(EstateRow, EstateRow.id == ApprovalRow.estate_id)
        .where(EstateRow.name == estate)
        .order_by(ApprovalRow.id)
    )
    if wave is not None:
        stmt = stmt.where(ApprovalRow.wave == wave)
    if dag_run_id is not None:
        stmt = stmt.where(ApprovalRow.dag_run_id == dag_run_id)
    return [_approval(estate, r) for r in session.scalars(stmt)]


# --------------------------------------------------------------------------- endpoints


def _endpoint(estate: str, row: ServerEndpointRow) -> Endpoint:
    return Endpoint(
        estate=estate, server_id=row.server_id, kind=row.kind, name=row.name,
        source_uri=row.source_uri, target_uri=row.target_uri, details=dict(row.details or {}),
    )


def upsert_endpoint(session: Session, *, estate: str, server_id: str,
                    kind: str | EndpointKind, name: str, source_uri: str | None = None,
                    target_uri: str | None = None,
                    details: Mapping[str, Any] | None = None) -> Endpoint:
    """Create or update one endpoint of a server.

    Arguments left as ``None`` keep their stored value and ``details`` are merged, so
    the lab can register the source side and provisioning add the target side later.
    """
    value = _check_enum(kind, EndpointKind, "server_endpoints.kind")
    extra = _json(dict(details or {}), "server_endpoints.details")
    with session.begin_nested():
        estate_id = _estate_id(session, estate, "upsert_endpoint")
        row, _ = _ensure_row(
            session, ServerEndpointRow,
            {"estate_id": estate_id, "server_id": server_id, "kind": value, "name": name},
            {"details": {}, "updated_at": utcnow()},
        )
        if source_uri is not None:
            row.source_uri = source_uri
        if target_uri is not None:
            row.target_uri = target_uri
        row.details = {**(row.details or {}), **extra}
        row.updated_at = utcnow()
        session.flush()
    return _endpoint(estate, row)


def replace_server_endpoints(session: Session, *, estate: str, server_id: str,
                             items: Sequence[Mapping[str, Any]]) -> list[Endpoint]:
    """Make ``items`` (dicts with kind, name, source_uri, target_uri, details) exactly the
    endpoints of one server; re-importing the same list leaves the same rows.

    A target URI the items leave out is kept from the stored endpoint of the same kind
    and name, because provisioning writes targets after the person registered sources.
    All or nothing: a bad item leaves the server's endpoints as they were.
    """
    values = []
    for index, item in enumerate(items):
        where = f"server_endpoints[{server_id}][{index}]"
        values.append({
            "kind": _check_enum(item["kind"], EndpointKind, f"{where}.kind"),
            "name": item["name"],
            "source_uri": item.get("source_uri"),
            "target_uri": item.get("target_uri"),
            "details": _json(dict(item.get("details") or {}), f"{where}.details"),
        })
    with session.begin_nested():
        estate_id = _estate_id(session, estate, "replace_server_endpoints")
        if server_id not in server_ids(session, estate):
            raise StoreError(f"estate {estate!r} has no server {server_id!r}; "
                             "endpoints are only registered for servers of the estate")
        old = {(kind, name): target for kind, name, target in session.execute(
            select(ServerEndpointRow.kind, ServerEndpointRow.name, ServerEndpointRow.target_uri)
            .where(ServerEndpointRow.estate_id == estate_id,
                   ServerEndpointRow.server_id == server_id))}
        # "fetch": rows already loaded in this session leave it, so a new row that
        # reuses a deleted id (SQLite does) is never served from a stale object.
        session.execute(
            delete(ServerEndpointRow).where(ServerEndpointRow.estate_id == estate_id,
                                            ServerEndpointRow.server_id == server_id),
            execution_options={"synchronize_session": "fetch"},
        )
        now = utcnow()
        rows = [{**v, "estate_id": estate_id, "server_id": server_id, "updated_at": now,
                 "target_uri": v["target_uri"] or old.get((v["kind"], v["name"]))}
                for v in values]
        if rows:
            session.execute(ServerEndpointRow.__table__.insert(), rows)
        session.flush()
    return endpoints(session, estate, server_id)


def server_ids(session: Session, estate: str) -> set[str]:
    """The server ids of a stored estate (empty when the estate is unknown)."""
    return set(session.scalars(
        select(ServerRow.server_id).join(EstateRow, EstateRow.id == ServerRow.estate_id)
        .where(EstateRow.name == estate)))


def endpoints(session: Session, estate: str, server_id: str | None = None,
              kind: str | EndpointKind | None = None) -> list[Endpoint]:
    stmt = (
        select(ServerEndpointRow)
        .join(EstateRow, EstateRow.id == ServerEndpointRow.estate_id)
        .where(EstateRow.name == estate)
        .order_by(ServerEndpointRow.server_id, ServerEndpointRow.kind, ServerEndpointRow.name)
    )
    if server_id is not None:
        stmt = stmt.where(ServerEndpointRow.server_id == server_id)
    if kind is not None:
        stmt = stmt.where(
            ServerEndpointRow.kind == _check_enum(kind, EndpointKind, "server_endpoints.kind")
        )
    return [_endpoint(estate, r) for r in session.scalars(stmt)]


# --------------------------------------------------------------------------- cloud ledger


def _resource(estate: str, row: CloudResourceRow) -> CloudResource:
    return CloudResource(
        id=row.id, estate=estate, wave=row.wave, resource_type=row.resource_type,
        resource_id=row.resource_id, name=row.name, tags=dict(row.tags or {}),
        created_by_run=row.created_by_run, created_at=row.created_at, deleted_at=row.deleted_at,
    )


def record_cloud_resource(session: Session, *, estate: str, wave: int, resource_type: str,
                          resource_id: str, name: str | None = None,
                          tags: Mapping[str, Any] | None = None,
                          created_by_run: str | None = None) -> CloudResource:
    """Add a resource to the rollback ledger; idempotent on (estate, type, id).

    Recording a resource again marks it live again (a deterministic id such as a DNS
    record name can be deleted by a rollback and re-created by a re-run), keeps the wave
    and run that first created it, and updates name and tags when given.
    """
    tag_values = _json(dict(tags or {}), "cloud_resources.tags")
    with session.begin_nested():
        estate_id = _estate_id(session, estate, "record_cloud_resource")
        row, _ = _ensure_row(
            session, CloudResourceRow,
            {"estate_id": estate_id, "resource_type": resource_type, "resource_id": resource_id},
            {"wave": wave, "name": name, "tags": tag_values, "created_by_run": created_by_run,
             "created_at": utcnow()},
        )
        if name is not None:
            row.name = name
        if tags is not None:
            row.tags = tag_values
        row.deleted_at = None
        session.flush()
    return _resource(estate, row)


def cloud_resources(session: Session, estate: str, wave: int | None = None,
                    live_only: bool = True) -> list[CloudResource]:
    """Ledger entries in creation order (roll back in reverse)."""
    stmt = (
        select(CloudResourceRow)
        .join(EstateRow, EstateRow.id == CloudResourceRow.estate_id)
        .where(EstateRow.name == estate)
        .order_by(CloudResourceRow.id)
    )
    if wave is not None:
        stmt = stmt.where(CloudResourceRow.wave == wave)
    if live_only:
        stmt = stmt.where(CloudResourceRow.deleted_at.is_(None))
    return [_resource(estate, r) for r in session.scalars(stmt)]


def mark_resource_deleted(session: Session, *, estate: str, resource_type: str,
                          resource_id: str, deleted_at: datetime | None = None) -> bool:
    """Mark a ledger entry deleted; False when the ledger never had it. Idempotent: the
    first deletion time is kept."""
    estate_id = session.scalar(select(EstateRow.id).where(EstateRow.name == estate))
    if estate_id is None:
        return False
    row = session.scalars(
        select(CloudResourceRow).where(
            CloudResourceRow.estate_id == estate_id,
            CloudResourceRow.resource_type == resource_type,
            CloudResourceRow.resource_id == resource_id,
        ).with_for_update()
    ).one_or_none()
    if row is None:
        return False
    if row.deleted_at is None:
        row.deleted_at = deleted_at or utcnow()
        session.flush()
    return True


# --------------------------------------------------------------------------- events


def _event(estate: str, row: MigrationEventRow) -> MigrationEvent:
    return MigrationEvent(
        id=row.id, estate=estate, wave=row.wave, dag_run_id=row.dag_run_id, phase=row.phase,
        kind=row.kind, message=row.message, data=dict(row.data or {}), at=row.at,
    )


def add_event(session: Session, *, estate: str, message: str, kind: str = "info",
              wave: int | None = None, run_id: str | None = None,
              phase: str | None = None, data: Mapping[str, Any] | None = None,
              at: datetime | None = None, dag_run_id: str | None = None) -> MigrationEvent:
    """Append a progress event; its id is the cursor for :func:`events` ``since_id``.

    ``run_id`` is the Airflow DAG run id (``dag_run_id`` is accepted as a synonym, the
    name the other record functions use).

    On PostgreSQL ids come from a sequence, so an event committed late can carry a lower
    id than one already read; a display that must never miss one should re-read a small
    window before its cursor.
    """
    if run_id is not None and dag_run_id is not None and run_id != dag_run_id:
        raise StoreError(f"migration_events: run_id {run_id!r} != dag_run_id {dag_run_id!r}")
    dag_run_id = run_id if run_id is not None else dag_run_id
    row = MigrationEventRow(
        estate_id=_estate_id(session, estate, "add_event"), wave=wave, dag_run_id=dag_run_id,
        phase=phase, kind=kind, message=message,
        data=_json(dict(data or {}), "migration_events.data"), at=at or utcnow(),
    )
    session.add(row)
    session.flush()
    return _event(estate, row)


def events(session: Session, estate: str, wave: int | None = None, since_id: int | None = None,
           limit: int | None = None) -> list[MigrationEvent]:
    """Events in the order they were added, after ``since_id`` when given."""
    stmt = (
        select(MigrationEventRow)
        .join(EstateRow, EstateRow.id == MigrationEventRow.estate_id)
        .where(EstateRow.name == estate)
        .order_by(MigrationEventRow.id)
    )
    if wave is not None:
        stmt = stmt.where(MigrationEventRow.wave == wave)
    if since_id is not None:
        stmt = stmt.where(MigrationEventRow.id > since_id)
    if limit is not None:
        stmt = stmt.limit(limit)
    return [_event(estate, r) for r in session.scalars(stmt)]


# --------------------------------------------------------------------------- wave state


def _wave_state(estate: str, row: WaveStateRow) -> WaveState:
    return WaveState(estate=estate, wave=row.wave, run_id=row.run_id, name=row.name,
                     seq=row.seq, payload=dict(row.payload or {}), written_by=row.written_by,
                     written_at=row.written_at)


def put_wave_state(session: Session, *, estate: str, wave: int, name: str,
                   payload: Mapping[str, Any], run_id: str = "", seq: int = 0,
                   written_by: str | None = None) -> WaveState:
    """Hand state to a later task of the wave; idempotent on (estate, wave, run, name,
    seq): writing the same key again (a retried task) replaces payload, host and time,
    so there is one record per key, in one transaction with nothing half-written."""
    if not name or len(name) > 64:
        raise StoreError(f"wave_state.name: {name!r} must be 1 to 64 characters")
    values = _json(dict(payload), "wave_state.payload")
    now = utcnow()
    with session.begin_nested():
        estate_id = _estate_id(session, estate, "put_wave_state")
        row, _ = _ensure_row(
            session, WaveStateRow,
            {"estate_id": estate_id, "wave": wave, "run_id": run_id, "name": name,
             "seq": seq},
            {"payload": values, "written_by": written_by, "written_at": now},
        )
        row.payload = values
        row.written_by = written_by
        row.written_at = now
        session.flush()
    return _wave_state(estate, row)


def _wave_state_query(estate: str, wave: int, name: str, run_id: str) -> Select[tuple[
        WaveStateRow]]:
    return (
        select(WaveStateRow)
        .join(EstateRow, EstateRow.id == WaveStateRow.estate_id)
        .where(EstateRow.name == estate, WaveStateRow.wave == wave,
               WaveStateRow.run_id == run_id, WaveStateRow.name == name)
        .order_by(WaveStateRow.seq)
    )


def get_wave_state(session: Session, estate: str, wave: int, name: str, run_id: str = "",
                   seq: int = 0) -> WaveState | None:
    """The record of this key, or ``None`` (never an empty payload in its place)."""
    row = session.scalars(_wave_state_query(estate, wave, name, run_id)
                          .where(WaveStateRow.seq == seq)).one_or_none()
    return None if row is None else _wave_state(estate, row)


def wave_state_items(session: Session, estate: str, wave: int, name: str,
                     run_id: str = "") -> list[WaveState]:
    """Every item of one name (e.g. each replication round), by ``seq``."""
    return [_wave_state(estate, r)
            for r in session.scalars(_wave_state_query(estate, wave, name, run_id))]


def delete_wave_state(session: Session, *, estate: str, wave: int, name: str,
                      run_id: str = "") -> int:
    """Remove every item of one name (teardown: the resources it described are gone)."""
    estate_id = session.scalar(select(EstateRow.id).where(EstateRow.name == estate))
    if estate_id is None:
        return 0
    result = session.execute(delete(WaveStateRow).where(
        WaveStateRow.estate_id == estate_id, WaveStateRow.wave == wave,
        WaveStateRow.run_id == run_id, WaveStateRow.name == name))
    return int(getattr(result, "rowcount", 0) or 0)
