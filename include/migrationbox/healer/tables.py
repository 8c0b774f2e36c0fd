"""The healer's own SQL tables: resource locks, the action log, remediation records.

They live in their own ``MetaData`` (prefixed ``healer_``) rather than in the store's
Alembic-managed schema, so the healer works against any SQLAlchemy URL (the store's, or a
separate one) and its tables can be created idempotently with :func:`ensure_tables`.
Timestamps use the store's :class:`UTCDateTime` so SQLite and PostgreSQL compare alike.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)
from sqlalchemy.engine import Engine

from migrationbox.store.models import UTCDateTime

metadata = MetaData(naming_convention={
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "pk": "pk_%(table_name)s",
})

#: at most one row per resource: the primary key is the lock
locks = Table(
    "healer_locks", metadata,
    Column("resource", String(255), primary_key=True),
    Column("action", String(100), nullable=False),
    Column("holder", String(255), nullable=False),
    Column("token", String(64), nullable=False),
    Column("acquired_at", UTCDateTime(), nullable=False),
    Column("expires_at", UTCDateTime(), nullable=False),
)

#: one row per remediation started, for the per-resource rate limit and the audit trail
action_log = Table(
    "healer_action_log", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("resource", String(255), nullable=False),
    Column("action", String(100), nullable=False),
    Column("holder", String(255), nullable=False),
    Column("token", String(64), nullable=False, unique=True),
    Column("started_at", UTCDateTime(), nullable=False),
    Column("released_at", UTCDateTime(), nullable=True),
    Index("ix_healer_action_log_resource_started", "resource", "started_at"),
)

#: the plan's remediation record (component 5), plus the classifier's features
remediations = Table(
    "healer_remediations", metadata,
    Column("remediation_id", String(64), primary_key=True),
    Column("timestamp", UTCDateTime(), nullable=False, index=True),
    Column("anomaly_type", String(100), nullable=False),
    Column("action", String(100), nullable=False),
    Column("resource", String(255), nullable=True),
    Column("severity", String(8), nullable=True),
    Column("root_cause", String(100), nullable=True),
    Column("success", Boolean, nullable=False),
    Column("time_to_recovery_seconds", Float, nullable=True),
    Column("side_effects", JSON, nullable=False),
    Column("cost_impact_monthly", Float, nullable=True),
    Column("confidence_before", Float, nullable=False),
    Column("confidence_after", Float, nullable=False),
    Column("notes", Text, nullable=True),
)


def ensure_tables(engine: Engine) -> None:
    """Create the healer's tables if missing (safe to call from every process)."""
    metadata.create_all(engine, checkfirst=True)
