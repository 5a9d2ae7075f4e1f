"""tasks.waiting_since: a pending task waiting for a slot of its job type's concurrency limit

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25 17:51:00.614906
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import jobplane.models

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("waiting_since", jobplane.models.UTCDateTime(timezone=True), nullable=True)
        )
        batch_op.create_index(
            "ix_tasks_waiting",
            ["type", "waiting_since"],
            unique=False,
            postgresql_where=sa.text("waiting_since IS NOT NULL"),
            sqlite_where=sa.text("waiting_since IS NOT NULL"),
        )


def downgrade() -> None:
    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.drop_index(
            "ix_tasks_waiting",
            postgresql_where=sa.text("waiting_since IS NOT NULL"),
            sqlite_where=sa.text("waiting_since IS NOT NULL"),
        )
        batch_op.drop_column("waiting_since")
