"""Where the healer keeps incidents and health-probe history (its own tables).

Like ``tables.py`` these tables live in their own ``MetaData`` and are created
idempotently, so the healer works on the store's database or a separate one:

* ``healer_incidents`` — one row per incident: the :class:`Incident` as JSON, the rendered
  report, and the columns to list and de-duplicate by (estate, resource, anomaly type,
  status). Ids follow the plan (``INC-YYYY-MM-DD-NNN``, the sequence per day); two
  writers racing for the same number are serialised by the primary key and retry.
* ``healer_health_probes`` — each probe of a resource's health endpoints, so that
  "5 of the last 5 health checks failed" and the onset of a bad spell survive from one
  sensing run to the next (each run is a separate process).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import (
    Column,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    and_,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from migrationbox.healer.health import HealthResult, HealthStatus
from migrationbox.healer.incident import Incident, IncidentStatus, format_incident_id
from migrationbox.store.models import UTCDateTime

metadata = MetaData()

incidents = Table(
    "healer_incidents", metadata,
    Column("incident_id", String(40), primary_key=True),
    Column("day", String(10), nullable=False),
    Column("sequence", Integer, nullable=False),
    Column("estate", String(100), nullable=False),
    Column("resource", String(255), nullable=False),  # remediation target (root cause)
    Column("seen_on", String(255), nullable=False),  # where the anomaly was observed
    Column("anomaly_type", String(100), nullable=False),
    Column("status", String(30), nullable=False),
    Column("severity", String(4), nullable=False),
    Column("title", Text, nullable=False),
    Column("detected_at", UTCDateTime(), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
    Column("body", Text, nullable=False),
    Column("report", Text, nullable=True),
    Index("ix_healer_incidents_open", "estate", "seen_on", "anomaly_type", "status"),
)

probes = Table(
    "healer_health_probes", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("estate", String(100), nullable=False),
    Column("resource", String(255), nullable=False),
    Column("observed_at", UTCDateTime(), nullable=False),
    Column("status", String(20), nullable=False),
    Column("unhealthy_since", UTCDateTime(), nullable=True),
    Column("detail", Text, nullable=False),
    Index("ix_healer_health_probes_res", "estate", "resource", "observed_at"),
)

OPEN_STATUSES = (IncidentStatus.open.value, IncidentStatus.awaiting_approval.value)


def ensure_tables(engine: Engine) -> None:
    from migrationbox.healer import tables

    tables.ensure_tables(engine)
    metadata.create_all(engine, checkfirst=True)


@dataclass(frozen=True)
class IncidentRow:
    incident_id: str
    estate: str
    resource: str
    anomaly_type: str
    status: str
    severity: str
    title: str
    detected_at: datetime
    updated_at: datetime

    def as_dict(self) -> dict[str, Any]:
        return {"incident_id": self.incident_id, "estate": self.estate,
                "resource": self.resource, "anomaly_type": self.anomaly_type,
                "status": self.status, "severity": self.severity, "title": self.title,
                "detected_at": self.detected_at.isoformat(),
                "updated_at": self.updated_at.isoformat()}


class IncidentStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        ensure_tables(engine)

    def next_id(self, day: date) -> str:
        with self.engine.connect() as conn:
            top = conn.execute(select(func.max(incidents.c.sequence)).where(
                incidents.c.day == day.isoformat())).scalar()
        return format_incident_id(day, int(top or 0) + 1)

    def create(self, estate: str, anomaly_type: str, build: Any, *, seen_on: str | None = None,
               attempts: int = 5) -> Incident:
        """Insert a new incident; ``build(incident_id)`` returns the :class:`Incident`.

        The id's sequence is taken as max+1 for the day; a concurrent writer that took the
        same number makes the insert fail on the primary key, and we retry with the next.
        """
        day = datetime.now(UTC).date()
        for _ in range(attempts):
            incident: Incident = build(self.next_id(day))
            try:
                with self.engine.begin() as conn:
                    conn.execute(insert(incidents).values(
                        incident_id=incident.incident_id, day=day.isoformat(),
                        sequence=int(incident.incident_id.rsplit("-", 1)[1]), estate=estate,
                        resource=incident.resource, seen_on=seen_on or incident.resource,
                        anomaly_type=anomaly_type,
                        status=incident.status.value, severity=incident.severity,
                        title=incident.title, detected_at=incident.detected_at,
                        updated_at=datetime.now(UTC), body=incident.model_dump_json(),
                        report=None))
                return incident
            except IntegrityError:
                continue
        raise RuntimeError(f"healer_incidents: could not allocate an id for {day} after "
                           f"{attempts} attempts")

    def save(self, incident: Incident, report: str | None = None) -> None:
        with self.engine.begin() as conn:
            done = conn.execute(update(incidents).where(
                incidents.c.incident_id == incident.incident_id).values(
                status=incident.status.value, severity=incident.severity,
                title=incident.title, updated_at=datetime.now(UTC),
                body=incident.model_dump_json(), report=report)).rowcount
        if not done:
            raise KeyError(f"healer_incidents: no incident {incident.incident_id!r}")

    def open_for(self, estate: str, resource: str, anomaly_type: str, *,
                 within: timedelta | None = None, now: datetime | None = None
                 ) -> Incident | None:
        """The incident that already covers this resource and anomaly type: an open or
        awaiting-approval one, or (with ``within``) one alerted that recently. Keyed by the
        server the anomaly was seen on (stored in ``resource`` or the row's title)."""
        now = now or datetime.now(UTC)
        cond = incidents.c.status.in_(OPEN_STATUSES)
        if within is not None:
            cond = cond | and_(incidents.c.status == IncidentStatus.alerted.value,
                               incidents.c.detected_at >= now - within)
        with self.engine.connect() as conn:
            row = conn.execute(select(incidents.c.body).where(and_(
                incidents.c.estate == estate, incidents.c.seen_on == resource,
                incidents.c.anomaly_type == anomaly_type, cond)).order_by(
                incidents.c.detected_at.desc())).first()
        return None if row is None else Incident.model_validate_json(row.body)

    def last_healed(self, estate: str, resource: str, anomaly_type: str, *,
                    since: datetime) -> Incident | None:
        """The newest incident of this resource and anomaly type detected since ``since``
        that was healed and verified (``resolved``): a condition that comes back while that
        incident's points still fill the detectors' baseline is the same, already
        confirmed, problem (see ``Healer._situations``)."""
        with self.engine.connect() as conn:
            row = conn.execute(select(incidents.c.body).where(and_(
                incidents.c.estate == estate, incidents.c.seen_on == resource,
                incidents.c.anomaly_type == anomaly_type,
                incidents.c.status == IncidentStatus.resolved.value,
                incidents.c.detected_at >= since)).order_by(
                incidents.c.detected_at.desc())).first()
        return None if row is None else Incident.model_validate_json(row.body)

    def _column(self, incident_id: str, column: Any) -> Any:
        with self.engine.connect() as conn:
            value = conn.execute(select(column).where(
                incidents.c.incident_id == incident_id)).scalar()
        if value is None:
            raise KeyError(f"healer_incidents: no incident {incident_id!r}")
        return value

    def anomaly_type(self, incident_id: str) -> str:
        return str(self._column(incident_id, incidents.c.anomaly_type))

    def estate(self, incident_id: str) -> str:
        return str(self._column(incident_id, incidents.c.estate))

    def get(self, incident_id: str) -> tuple[Incident, str | None] | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(incidents.c.body, incidents.c.report).where(
                incidents.c.incident_id == incident_id)).first()
        return None if row is None else (Incident.model_validate_json(row.body), row.report)

    def list(self, estate: str | None = None, status: str | None = None,
             limit: int = 100) -> list[IncidentRow]:
        stmt = select(incidents).order_by(incidents.c.detected_at.desc()).limit(limit)
        if estate:
            stmt = stmt.where(incidents.c.estate == estate)
        if status:
            stmt = stmt.where(incidents.c.status == status)
        with self.engine.connect() as conn:
            return [IncidentRow(r.incident_id, r.estate, r.resource, r.anomaly_type,
                                r.status, r.severity, r.title, r.detected_at, r.updated_at)
                    for r in conn.execute(stmt)]


class ProbeStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        ensure_tables(engine)

    def add(self, estate: str, result: HealthResult) -> None:
        with self.engine.begin() as conn:
            conn.execute(insert(probes).values(
                estate=estate, resource=result.resource,
                observed_at=result.observed_at or datetime.now(UTC),
                status=result.status.value, unhealthy_since=result.unhealthy_since,
                detail=result.detail[:2000]))

    def prune(self, before: datetime) -> int:
        """Delete probes older than ``before`` (the decisions only read the newest five;
        older rows are history for people). Returns how many rows went."""
        from sqlalchemy import delete

        with self.engine.begin() as conn:
            return int(conn.execute(delete(probes).where(probes.c.observed_at < before)
                                    ).rowcount or 0)

    def last(self, estate: str, resource: str, n: int = 5) -> list[HealthResult]:
        """The newest ``n`` probes, newest first."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(probes).where(and_(
                probes.c.estate == estate, probes.c.resource == resource)).order_by(
                probes.c.observed_at.desc(), probes.c.id.desc()).limit(n)).all()
        return [HealthResult(resource=r.resource, status=HealthStatus(r.status),
                             observed_at=r.observed_at, unhealthy_since=r.unhealthy_since,
                             detail=r.detail) for r in rows]


def failed_of_last(results: Sequence[HealthResult], n: int = 5) -> int:
    return sum(1 for r in list(results)[:n] if r.status is HealthStatus.unhealthy)
