"""tasks.published_at: dropped; a pending task without an outbox row is the published one

The relay marked every task it published, a fourth write of each task row whose row
locks could deadlock with the workers' batched claims. The sweeper now tells a
published task by its missing outbox row.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import jobplane.models

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("tasks") as batch:
        batch.drop_column("published_at")


def downgrade() -> None:
    with op.batch_alter_table("tasks") as batch:
        batch.add_column(
            sa.Column("published_at", jobplane.models.UTCDateTime(timezone=True), nullable=True)
        )
