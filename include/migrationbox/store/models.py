"""The MigrationBox store schema: typed SQLAlchemy 2 ORM models.

These classes are the single source of truth for the schema; the Alembic revisions in
``migrations/versions`` must create exactly this (a unit test compares them with
autogenerate). Types are portable on purpose (``JSON``, timezone-aware ``DateTime``,
plain strings with CHECK constraints instead of native enums) so that the embedded SQLite
store and a production PostgreSQL store behave the same.

ORM objects never leave a session: ``migrationbox.store.repository`` converts rows into
plain dataclasses or pydantic models before returning them.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

#: Deterministic constraint names, so that migrations can later drop or alter them by
#: name on every backend (SQLite batch mode needs named constraints).
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class PhaseStatus(StrEnum):
    running = "running"
    success = "success"
    failed = "failed"
    rolled_back = "rolled_back"
    skipped = "skipped"


class WaveStatus(StrEnum):
    pending = "pending"
    running = "running"
    completed = "completed"
    failed = "failed"
    rolled_back = "rolled_back"
    skipped = "skipped"


class PlanStatus(StrEnum):
    planned = "planned"
    superseded = "superseded"
    in_progress = "in_progress"
    completed = "completed"


class ApprovalDecision(StrEnum):
    pending = "pending"
    approved = "approved"
    rejected = "rejected"
    timed_out = "timed_out"
    failed = "failed"  # the gate task itself errored


class EndpointKind(StrEnum):
    disk = "disk"
    database = "database"
    http = "http"


def _in(column: str, enum: type[StrEnum]) -> str:
    values = ", ".join(f"'{member.value}'" for member in enum)
    return f"{column} IN ({values})"


class UTCDateTime(TypeDecorator[datetime]):
    """``DateTime(timezone=True)`` that always hands back aware UTC datetimes.

    SQLite has no timezone-aware timestamp type and returns naive values; PostgreSQL
    returns aware ones. Normalising here keeps comparisons and arithmetic identical on
    both, and refuses naive input rather than guessing what clock it came from.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value.isoformat()} given; use an aware UTC time")
        value = value.astimezone(UTC)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {
        dict[str, Any]: JSON,
        list[str]: JSON,
        datetime: UTCDateTime,
    }


class EstateRow(Base):
    __tablename__ = "estates"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(63), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    servers: Mapped[list[ServerRow]] = relationship(
        back_populates="estate", cascade="all, delete-orphan", passive_deletes=True,
        order_by="ServerRow.id",
    )
    plans: Mapped[list[PlanRow]] = relationship(
        back_populates="estate", cascade="all, delete-orphan", passive_deletes=True,
        order_by="PlanRow.version",
    )


class ServerRow(Base):
    __tablename__ = "servers"
    __table_args__ = (UniqueConstraint("estate_id", "server_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    estate_id: Mapped[int] = mapped_column(
        ForeignKey("estates.id", ondelete="CASCADE")
    )
    server_id: Mapped[str] = mapped_column(String(128))
    hostname: Mapped[str] = mapped_column(String(255))
    environment: Mapped[str] = mapped_column(String(32))
    role: Mapped[str | None] = mapped_column(String(64))
    record: Mapped[dict[str, Any]] = mapped_column()

    estate: Mapped[EstateRow] = relationship(back_populates="servers")


class PlanRow(Base):
    __tablename__ = "plans"
    __table_args__ = (
        UniqueConstraint("estate_id", "version"),
        CheckConstraint(_in("status", PlanStatus), name="status"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    estate_id: Mapped[int] = mapped_column(
        ForeignKey("estates.id", ondelete="CASCADE")
    )
    version: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime]
    stored_at: Mapped[datetime] = mapped_column(default=utcnow)
    status: Mapped[str] = mapped_column(String(20), default=PlanStatus.planned.value)
    settings: Mapped[dict[str, Any]]
    document: Mapped[dict[str, Any]] = mapped_column()

    estate: Mapped[EstateRow] = relationship(back_populates="plans")
    waves: Mapped[list[WaveRow]] = relationship(
        back_populates="plan", cascade="all, delete-orphan", passive_deletes=True,
        order_by="WaveRow.number",
    )
    move_groups: Mapped[list[MoveGroupRow]] = relationship(
        back_populates="plan", cascade="all, delete-orphan", passive_deletes=True,
        order_by="MoveGroupRow.id",
    )


class WaveRow(Base):
    __tablename__ = "waves"
    __table_args__ = (
        UniqueConstraint("plan_id", "number"),
        CheckConstraint(_in("status", WaveStatus), name="status"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    plan_id: Mapped[int] = mapped_column(ForeignKey("plans.id", ondelete="CASCADE"))
    number: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String(255))
    server_count: Mapped[int] = mapped_column(Integer)
    needs_approval: Mapped[bool] = mapped_column(Boolean)
    predicted_monthly_usd: Mapped[float] = mapped_column(Float)
    estimated_hours: Mapped[float] = mapped_column(Float)
    status: Mapped[str] = mapped_column(String(20), default=WaveStatus.pending.value)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    plan: Mapped[PlanRow] = relationship(back_populates="waves")


class MoveGroupRow(Base):
    __tablename__ = "move_groups"
    __table_args__ = (UniqueConstraint("plan_id", "group_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    plan_id: Mapped[int] = mapped_column(ForeignKey("plans.id", ondelete="CASCADE"))
    group_id: Mapped[str] = mapped_column(String(255))
    server_ids: Mapped[list[str]]
    is_cycle: Mapped[bool] = mapped_column(Boolean, default=False)

    plan: Mapped[PlanRow] = relationship(back_populates="move_groups")


class PhaseRunRow(Base):
    """One phase of one wave in one DAG run; a retry updates the same row."""

    __tablename__ = "phase_runs"
    __table_args__ = (
        UniqueConstraint("estate_id", "wave", "dag_run_id", "phase"),
        CheckConstraint(_in("status", PhaseStatus), name="status"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    estate_id: Mapped[int] = mapped_column(
        ForeignKey("estates.id", ondelete="CASCADE")
    )
    plan_version: Mapped[int] = mapped_column(Integer)
    wave: Mapped[int] = mapped_column(Integer)
    dag_run_id: Mapped[str] = mapped_column(String(250))
    phase: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(20))
    attempts: Mapped[int] = mapped_column(Integer, default=1)
    started_at: Mapped[datetime]
    finished_at: Mapped[datetime | None]
    summary: Mapped[str | None] = mapped_column(Text)
    details: Mapped[dict[str, Any]] = mapped_column(default=dict)


class ApprovalRow(Base):
    """Who answered a human gate, how and when (one row per gate per DAG run)."""

    __tablename__ = "approvals"
    __table_args__ = (
        UniqueConstraint("estate_id", "wave", "dag_run_id", "gate"),
        CheckConstraint(_in("decision", ApprovalDecision), name="decision"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    estate_id: Mapped[int] = mapped_column(
        ForeignKey("estates.id", ondelete="CASCADE")
    )
    wave: Mapped[int] = mapped_column(Integer)
    dag_run_id: Mapped[str] = mapped_column(String(250))
    gate: Mapped[str] = mapped_column(String(64))
    decision: Mapped[str] = mapped_column(String(20))
    approved_by: Mapped[str | None] = mapped_column(String(255))
    responded_at: Mapped[datetime | None]
    comment: Mapped[str | None] = mapped_column(Text)


class ServerEndpointRow(Base):
    """Where a server's data or service lives, at the source and (once built) the target."""

    __tablename__ = "server_endpoints"
    __table_args__ = (
        UniqueConstraint("estate_id", "server_id", "kind", "name"),
        CheckConstraint(_in("kind", EndpointKind), name="kind"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    estate_id: Mapped[int] = mapped_column(
        ForeignKey("estates.id", ondelete="CASCADE")
    )
    server_id: Mapped[str] = mapped_column(String(128))
    kind: Mapped[str] = mapped_column(String(20))
    name: Mapped[str] = mapped_column(String(255))
    source_uri: Mapped[str | None] = mapped_column(Text)
    target_uri: Mapped[str | None] = mapped_column(Text)
    details: Mapped[dict[str, Any]] = mapped_column(default=dict)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class CloudResourceRow(Base):
    """Ledger of every cloud resource a wave created, so rollback can find and delete it."""

    __tablename__ = "cloud_resources"
    __table_args__ = (
        UniqueConstraint("estate_id", "resource_type", "resource_id"),
        Index("ix_cloud_resources_estate_wave", "estate_id", "wave"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    estate_id: Mapped[int] = mapped_column(ForeignKey("estates.id", ondelete="CASCADE"))
    wave: Mapped[int] = mapped_column(Integer)
    resource_type: Mapped[str] = mapped_column(String(64))
    resource_id: Mapped[str] = mapped_column(String(512))
    name: Mapped[str | None] = mapped_column(String(255))
    tags: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_by_run: Mapped[str | None] = mapped_column(String(250))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    deleted_at: Mapped[datetime | None]


class MigrationEventRow(Base):
    """Append-only progress log; the autoincrement id is the cursor of the progress display."""

    __tablename__ = "migration_events"
    __table_args__ = (Index("ix_migration_events_estate_wave_id", "estate_id", "wave", "id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    estate_id: Mapped[int] = mapped_column(ForeignKey("estates.id", ondelete="CASCADE"))
    wave: Mapped[int | None] = mapped_column(Integer)
    dag_run_id: Mapped[str | None] = mapped_column(String(250))
    phase: Mapped[str | None] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(32))
    message: Mapped[str] = mapped_column(Text)
    data: Mapped[dict[str, Any]] = mapped_column(default=dict)
    at: Mapped[datetime] = mapped_column(default=utcnow)


class WaveStateRow(Base):
    """State one wave task hands to a later one (``phases.handoff``): what provision
    built, the replication rounds' figures and the final sync's verdict.

    In the store rather than a worker's local folder because the next task may run on
    another worker host. ``run_id`` is empty for state of the wave as a whole (what
    provision built serves every later run); ``seq`` numbers items of one name (the
    replication rounds). Writing the same key again replaces the row, so a retried task
    leaves one record, never two.
    """

    __tablename__ = "wave_state"
    __table_args__ = (UniqueConstraint("estate_id", "wave", "run_id", "name", "seq"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    estate_id: Mapped[int] = mapped_column(ForeignKey("estates.id", ondelete="CASCADE"))
    wave: Mapped[int] = mapped_column(Integer)
    run_id: Mapped[str] = mapped_column(String(250))
    name: Mapped[str] = mapped_column(String(64))
    seq: Mapped[int] = mapped_column(Integer)
    payload: Mapped[dict[str, Any]] = mapped_column()
    written_by: Mapped[str | None] = mapped_column(String(255))
    written_at: Mapped[datetime] = mapped_column(default=utcnow)


class TeamsConversationRow(Base):
    """A Teams conversation the bot has been talked to in (or installed into), with what
    the Bot Connector needs to reach it again and what it wants to be told.

    ``estate`` binds the conversation to one migration (a channel per migration, as the
    plan has it) so commands without an id act on it and its notifications land there.
    """

    __tablename__ = "teams_conversations"
    __table_args__ = (UniqueConstraint("conversation_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    conversation_id: Mapped[str] = mapped_column(String(512))
    service_url: Mapped[str] = mapped_column(String(1024))
    channel_id: Mapped[str] = mapped_column(String(64))
    tenant_id: Mapped[str | None] = mapped_column(String(128))
    reference: Mapped[dict[str, Any]] = mapped_column()
    estate: Mapped[str | None] = mapped_column(String(255))
    muted_until: Mapped[datetime | None]
    muted_kinds: Mapped[list[str]] = mapped_column(default=list)
    alert_config: Mapped[dict[str, Any]] = mapped_column(default=dict)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class TeamsConfirmationRow(Base):
    """A destructive intent waiting for its user's yes or no (the card's buttons carry
    only ``id``, so what runs is what was stored, not what a button sends)."""

    __tablename__ = "teams_confirmations"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    conversation_id: Mapped[str] = mapped_column(String(512))
    user_id: Mapped[str] = mapped_column(String(255))
    intent: Mapped[dict[str, Any]] = mapped_column()
    status: Mapped[str] = mapped_column(String(20), default="pending")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
    answered_at: Mapped[datetime | None]


class EstateApproverRow(Base):
    """Who may answer an estate's gates from Teams: ``role`` primary or backup (the
    backup is who an urgent approval escalates to)."""

    __tablename__ = "estate_approvers"
    __table_args__ = (UniqueConstraint("estate", "user_key"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    estate: Mapped[str] = mapped_column(String(255))
    user_key: Mapped[str] = mapped_column(String(255))
    display_name: Mapped[str | None] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(20), default="primary")
    added_at: Mapped[datetime] = mapped_column(default=utcnow)


class TeamsApprovalCardRow(Base):
    """An approval card posted for one gate of one DAG run in one conversation: the
    activity to update when the gate is answered, and the SLA clock's marks."""

    __tablename__ = "teams_approval_cards"
    __table_args__ = (
        UniqueConstraint("estate", "wave", "dag_run_id", "gate", "conversation_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    estate: Mapped[str] = mapped_column(String(255))
    wave: Mapped[int] = mapped_column(Integer)
    dag_id: Mapped[str] = mapped_column(String(250))
    dag_run_id: Mapped[str] = mapped_column(String(250))
    task_id: Mapped[str] = mapped_column(String(250))
    map_index: Mapped[int] = mapped_column(Integer, default=-1)
    gate: Mapped[str] = mapped_column(String(64))
    urgency: Mapped[str] = mapped_column(String(20), default="standard")
    conversation_id: Mapped[str] = mapped_column(String(512))
    activity_id: Mapped[str | None] = mapped_column(String(255))
    posted_at: Mapped[datetime] = mapped_column(default=utcnow)
    respond_by: Mapped[datetime | None]
    reminded_at: Mapped[datetime | None]
    escalated_at: Mapped[datetime | None]
    decided_at: Mapped[datetime | None]
    decided_by: Mapped[str | None] = mapped_column(String(255))
    decision: Mapped[str | None] = mapped_column(String(20))
    comment: Mapped[str | None] = mapped_column(Text)


class TeamsCommandRow(Base):
    """Who ran which bot command when, and how it ended (the team-activity feed)."""

    __tablename__ = "teams_commands"

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(default=utcnow)
    conversation_id: Mapped[str] = mapped_column(String(512))
    user_id: Mapped[str] = mapped_column(String(255))
    user_name: Mapped[str | None] = mapped_column(String(255))
    text: Mapped[str] = mapped_column(Text)
    language: Mapped[str | None] = mapped_column(String(8))
    command: Mapped[str | None] = mapped_column(String(40))
    migration_id: Mapped[str | None] = mapped_column(String(255))
    outcome: Mapped[str] = mapped_column(String(40))
    detail: Mapped[str | None] = mapped_column(Text)


class TeamsNotificationRow(Base):
    """One proactive message for one conversation, keyed so a notifier restart or a
    second notifier never sends it twice; kept with its attempts and last error."""

    __tablename__ = "teams_notifications"
    __table_args__ = (UniqueConstraint("key", "conversation_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(String(255))
    kind: Mapped[str] = mapped_column(String(40))
    conversation_id: Mapped[str] = mapped_column(String(512))
    status: Mapped[str] = mapped_column(String(20), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    activity_id: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    sent_at: Mapped[datetime | None]


class TeamsCursorRow(Base):
    """How far a reader (the notifier's scan of migration events, of incidents) got."""

    __tablename__ = "teams_cursors"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    position: Mapped[int] = mapped_column(Integer, default=0)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
