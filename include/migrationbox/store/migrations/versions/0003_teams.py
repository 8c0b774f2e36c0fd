"""Microsoft Teams bot state: conversations (how to reach them, what they are told),
pending confirmations, estate approvers, posted approval cards with their SLA marks,
the command log, sent notifications and the notifier's read cursors.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-07

Frozen like 0001: it does not import the ORM models.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _ts(name: str, nullable: bool = False) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def _s(name: str, length: int, nullable: bool = False) -> sa.Column:
    return sa.Column(name, sa.String(length=length), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "teams_conversations",
        sa.Column("id", sa.Integer(), nullable=False),
        _s("conversation_id", 512),
        _s("service_url", 1024),
        _s("channel_id", 64),
        _s("tenant_id", 128, True),
        sa.Column("reference", sa.JSON(), nullable=False),
        _s("estate", 255, True),
        _ts("muted_until", True),
        sa.Column("muted_kinds", sa.JSON(), nullable=False),
        sa.Column("alert_config", sa.JSON(), nullable=False),
        _ts("updated_at"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_teams_conversations")),
        sa.UniqueConstraint("conversation_id",
                            name=op.f("uq_teams_conversations_conversation_id")),
    )
    op.create_table(
        "teams_confirmations",
        _s("id", 64),
        _s("conversation_id", 512),
        _s("user_id", 255),
        sa.Column("intent", sa.JSON(), nullable=False),
        _s("status", 20),
        _ts("created_at"),
        _ts("expires_at"),
        _ts("answered_at", True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_teams_confirmations")),
    )
    op.create_table(
        "estate_approvers",
        sa.Column("id", sa.Integer(), nullable=False),
        _s("estate", 255),
        _s("user_key", 255),
        _s("display_name", 255, True),
        _s("role", 20),
        _ts("added_at"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_estate_approvers")),
        sa.UniqueConstraint("estate", "user_key",
                            name=op.f("uq_estate_approvers_estate_user_key")),
    )
    op.create_table(
        "teams_approval_cards",
        sa.Column("id", sa.Integer(), nullable=False),
        _s("estate", 255),
        sa.Column("wave", sa.Integer(), nullable=False),
        _s("dag_id", 250),
        _s("dag_run_id", 250),
        _s("task_id", 250),
        sa.Column("map_index", sa.Integer(), nullable=False),
        _s("gate", 64),
        _s("urgency", 20),
        _s("conversation_id", 512),
        _s("activity_id", 255, True),
        _ts("posted_at"),
        _ts("respond_by", True),
        _ts("reminded_at", True),
        _ts("escalated_at", True),
        _ts("decided_at", True),
        _s("decided_by", 255, True),
        _s("decision", 20, True),
        sa.Column("comment", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_teams_approval_cards")),
        sa.UniqueConstraint(
            "estate", "wave", "dag_run_id", "gate", "conversation_id",
            name=op.f("uq_teams_approval_cards_estate_wave_dag_run_id_gate_conversation_id"),
        ),
    )
    op.create_table(
        "teams_commands",
        sa.Column("id", sa.Integer(), nullable=False),
        _ts("at"),
        _s("conversation_id", 512),
        _s("user_id", 255),
        _s("user_name", 255, True),
        sa.Column("text", sa.Text(), nullable=False),
        _s("language", 8, True),
        _s("command", 40, True),
        _s("migration_id", 255, True),
        _s("outcome", 40),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_teams_commands")),
    )
    op.create_table(
        "teams_notifications",
        sa.Column("id", sa.Integer(), nullable=False),
        _s("key", 255),
        _s("kind", 40),
        _s("conversation_id", 512),
        _s("status", 20),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        _s("activity_id", 255, True),
        _ts("created_at"),
        _ts("sent_at", True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_teams_notifications")),
        sa.UniqueConstraint("key", "conversation_id",
                            name=op.f("uq_teams_notifications_key_conversation_id")),
    )
    op.create_table(
        "teams_cursors",
        _s("name", 64),
        sa.Column("position", sa.Integer(), nullable=False),
        _ts("updated_at"),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_teams_cursors")),
    )


def downgrade() -> None:
    for table in ("teams_cursors", "teams_notifications", "teams_commands",
                  "teams_approval_cards", "estate_approvers", "teams_confirmations",
                  "teams_conversations"):
        op.drop_table(table)
