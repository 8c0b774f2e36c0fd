"""What the store hands out: plain frozen dataclasses, never ORM objects.

(No ``slots``: callers turn records into dicts with ``dataclasses.asdict`` or
``vars()`` for XCom and JSON.)

ORM rows are bound to a session; anything that crosses out of ``session_scope`` (into a
DAG task, the HTTP API, the progress display) must be plain data that cannot lazy-load
or expire behind the caller's back.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


@dataclass(frozen=True)
class EstateSummary:
    name: str
    server_count: int
    plan_count: int
    latest_plan_version: int | None
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class PlanSummary:
    estate: str
    version: int
    status: str
    created_at: datetime
    stored_at: datetime
    wave_count: int
    server_count: int


@dataclass(frozen=True)
class WaveRecord:
    estate: str
    plan_version: int
    number: int
    name: str
    server_count: int
    needs_approval: bool
    predicted_monthly_usd: float
    estimated_hours: float
    status: str
    updated_at: datetime


@dataclass(frozen=True)
class PhaseRun:
    estate: str
    plan_version: int
    wave: int
    dag_run_id: str
    phase: str
    status: str
    attempts: int
    started_at: datetime
    finished_at: datetime | None
    summary: str | None
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def duration_s(self) -> float | None:
        if self.finished_at is None:
            return None
        return (self.finished_at - self.started_at).total_seconds()


@dataclass(frozen=True)
class Approval:
    estate: str
    wave: int
    dag_run_id: str
    gate: str
    decision: str
    approved_by: str | None
    responded_at: datetime | None
    comment: str | None


@dataclass(frozen=True)
class Endpoint:
    estate: str
    server_id: str
    kind: str
    name: str
    source_uri: str | None
    target_uri: str | None
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class CloudResource:
    id: int
    estate: str
    wave: int
    resource_type: str
    resource_id: str
    name: str | None
    tags: dict[str, Any]
    created_by_run: str | None
    created_at: datetime
    deleted_at: datetime | None

    @property
    def live(self) -> bool:
        return self.deleted_at is None


@dataclass(frozen=True)
class MigrationEvent:
    id: int
    estate: str
    wave: int | None
    dag_run_id: str | None
    phase: str | None
    kind: str
    message: str
    data: dict[str, Any]
    at: datetime


@dataclass(frozen=True)
class WaveState:
    """State a wave task handed to a later one (``phases.handoff``)."""

    estate: str
    wave: int
    run_id: str  # "" for state of the wave as a whole
    name: str
    seq: int
    payload: dict[str, Any]
    written_by: str | None
    written_at: datetime
