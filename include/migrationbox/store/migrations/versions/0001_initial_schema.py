"""Initial schema: estates, servers, plans, waves, move groups, phase runs, approvals,
server endpoints, the cloud-resource ledger and migration events.

Revision ID: 0001
Revises:
Create Date: 2026-11-25

Frozen copy of the schema at this revision: it deliberately does not import the ORM
models, so later model changes cannot silently rewrite history (they need a new
revision; ``tests/unit/test_store_migrations.py`` fails until one exists).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _id() -> sa.Column:
    return sa.Column("id", sa.Integer(), nullable=False)


def _ts(name: str, nullable: bool = False) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def _estate_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["estate_id"], ["estates.id"], name=op.f(f"fk_{table}_estate_id_estates"),
        ondelete="CASCADE",
    )


def _plan_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["plan_id"], ["plans.id"], name=op.f(f"fk_{table}_plan_id_plans"), ondelete="CASCADE"
    )


def _estate_id() -> sa.Column:
    return sa.Column("estate_id", sa.Integer(), nullable=False)


def upgrade() -> None:
    op.create_table(
        "estates",
        _id(),
        sa.Column("name", sa.String(length=63), nullable=False),
        _ts("created_at"),
        _ts("updated_at"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_estates")),
        sa.UniqueConstraint("name", name=op.f("uq_estates_name")),
    )
    op.create_table(
        "servers",
        _id(),
        _estate_id(),
        sa.Column("server_id", sa.String(length=128), nullable=False),
        sa.Column("hostname", sa.String(length=255), nullable=False),
        sa.Column("environment", sa.String(length=32), nullable=False),
        sa.Column("role", sa.String(length=64), nullable=True),
        sa.Column("record", sa.JSON(), nullable=False),
        _estate_fk("servers"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_servers")),
        sa.UniqueConstraint(
            "estate_id", "server_id", name=op.f("uq_servers_estate_id_server_id")
        ),
    )
    op.create_table(
        "plans",
        _id(),
        _estate_id(),
        sa.Column("version", sa.Integer(), nullable=False),
        _ts("created_at"),
        _ts("stored_at"),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("settings", sa.JSON(), nullable=False),
        sa.Column("document", sa.JSON(), nullable=False),
        sa.CheckConstraint(
            "status IN ('planned', 'superseded', 'in_progress', 'completed')",
            name=op.f("ck_plans_status"),
        ),
        _estate_fk("plans"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_plans")),
        sa.UniqueConstraint("estate_id", "version", name=op.f("uq_plans_estate_id_version")),
    )
    op.create_table(
        "waves",
        _id(),
        sa.Column("plan_id", sa.Integer(), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("server_count", sa.Integer(), nullable=False),
        sa.Column("needs_approval", sa.Boolean(), nullable=False),
        sa.Column("predicted_monthly_usd", sa.Float(), nullable=False),
        sa.Column("estimated_hours", sa.Float(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        _ts("updated_at"),
        sa.CheckConstraint(
            "status IN ('pending', 'running', 'completed', 'failed', 'rolled_back', 'skipped')",
            name=op.f("ck_waves_status"),
        ),
        _plan_fk("waves"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_waves")),
        sa.UniqueConstraint("plan_id", "number", name=op.f("uq_waves_plan_id_number")),
    )
    op.create_table(
        "move_groups",
        _id(),
        sa.Column("plan_id", sa.Integer(), nullable=False),
        sa.Column("group_id", sa.String(length=255), nullable=False),
        sa.Column("server_ids", sa.JSON(), nullable=False),
        sa.Column("is_cycle", sa.Boolean(), nullable=False),
        _plan_fk("move_groups"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_move_groups")),
        sa.UniqueConstraint("plan_id", "group_id", name=op.f("uq_move_groups_plan_id_group_id")),
    )
    op.create_table(
        "phase_runs",
        _id(),
        _estate_id(),
        sa.Column("plan_version", sa.Integer(), nullable=False),
        sa.Column("wave", sa.Integer(), nullable=False),
        sa.Column("dag_run_id", sa.String(length=250), nullable=False),
        sa.Column("phase", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        _ts("started_at"),
        _ts("finished_at", nullable=True),
        sa.Column("summary", sa.Text(), nullable=True),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.CheckConstraint(
            "status IN ('running', 'success', 'failed', 'rolled_back', 'skipped')",
            name=op.f("ck_phase_runs_status"),
        ),
        _estate_fk("phase_runs"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_phase_runs")),
        sa.UniqueConstraint(
            "estate_id", "wave", "dag_run_id", "phase",
            name=op.f("uq_phase_runs_estate_id_wave_dag_run_id_phase"),
        ),
    )
    op.create_table(
        "approvals",
        _id(),
        _estate_id(),
        sa.Column("wave", sa.Integer(), nullable=False),
        sa.Column("dag_run_id", sa.String(length=250), nullable=False),
        sa.Column("gate", sa.String(length=64), nullable=False),
        sa.Column("decision", sa.String(length=20), nullable=False),
        sa.Column("approved_by", sa.String(length=255), nullable=True),
        _ts("responded_at", nullable=True),
        sa.Column("comment", sa.Text(), nullable=True),
        sa.CheckConstraint(
            "decision IN ('pending', 'approved', 'rejected', 'timed_out', 'failed')",
            name=op.f("ck_approvals_decision"),
        ),
        _estate_fk("approvals"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_approvals")),
        sa.UniqueConstraint(
            "estate_id", "wave", "dag_run_id", "gate",
            name=op.f("uq_approvals_estate_id_wave_dag_run_id_gate"),
        ),
    )
    op.create_table(
        "server_endpoints",
        _id(),
        _estate_id(),
        sa.Column("server_id", sa.String(length=128), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("source_uri", sa.Text(), nullable=True),
        sa.Column("target_uri", sa.Text(), nullable=True),
        sa.Column("details", sa.JSON(), nullable=False),
        _ts("updated_at"),
        sa.CheckConstraint(
            "kind IN ('disk', 'database', 'http')", name=op.f("ck_server_endpoints_kind")
        ),
        _estate_fk("server_endpoints"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_server_endpoints")),
        sa.UniqueConstraint(
            "estate_id", "server_id", "kind", "name",
            name=op.f("uq_server_endpoints_estate_id_server_id_kind_name"),
        ),
    )
    op.create_table(
        "cloud_resources",
        _id(),
        _estate_id(),
        sa.Column("wave", sa.Integer(), nullable=False),
        sa.Column("resource_type", sa.String(length=64), nullable=False),
        sa.Column("resource_id", sa.String(length=512), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=True),
        sa.Column("tags", sa.JSON(), nullable=False),
        sa.Column("created_by_run", sa.String(length=250), nullable=True),
        _ts("created_at"),
        _ts("deleted_at", nullable=True),
        _estate_fk("cloud_resources"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_cloud_resources")),
        sa.UniqueConstraint(
            "estate_id", "resource_type", "resource_id",
            name=op.f("uq_cloud_resources_estate_id_resource_type_resource_id"),
        ),
    )
    op.create_index(
        "ix_cloud_resources_estate_wave", "cloud_resources", ["estate_id", "wave"], unique=False
    )
    op.create_table(
        "migration_events",
        _id(),
        _estate_id(),
        sa.Column("wave", sa.Integer(), nullable=True),
        sa.Column("dag_run_id", sa.String(length=250), nullable=True),
        sa.Column("phase", sa.String(length=64), nullable=True),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        _ts("at"),
        _estate_fk("migration_events"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_migration_events")),
    )
    op.create_index(
        "ix_migration_events_estate_wave_id",
        "migration_events",
        ["estate_id", "wave", "id"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index("ix_migration_events_estate_wave_id", table_name="migration_events")
    op.drop_table("migration_events")
    op.drop_index("ix_cloud_resources_estate_wave", table_name="cloud_resources")
    op.drop_table("cloud_resources")
    op.drop_table("server_endpoints")
    op.drop_table("approvals")
    op.drop_table("phase_runs")
    op.drop_table("move_groups")
    op.drop_table("waves")
    op.drop_table("plans")
    op.drop_table("servers")
    op.drop_table("estates")
