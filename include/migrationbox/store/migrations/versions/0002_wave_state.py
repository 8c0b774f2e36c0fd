"""Wave state: what one wave task hands to a later one (provisioned resources, the
replication rounds' figures, the final sync's verdict), in the store instead of a
worker's local folder, so the next task may run on any worker host.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-07

Frozen like 0001: it does not import the ORM models.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "wave_state",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("estate_id", sa.Integer(), nullable=False),
        sa.Column("wave", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.String(length=250), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("written_by", sa.String(length=255), nullable=True),
        sa.Column("written_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["estate_id"], ["estates.id"], name=op.f("fk_wave_state_estate_id_estates"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_wave_state")),
        sa.UniqueConstraint(
            "estate_id", "wave", "run_id", "name", "seq",
            name=op.f("uq_wave_state_estate_id_wave_run_id_name_seq"),
        ),
    )


def downgrade() -> None:
    op.drop_table("wave_state")
