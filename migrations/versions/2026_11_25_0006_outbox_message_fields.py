"""outbox: type, queue and timeout_seconds, copied from the task

The relay then takes a batch with one DELETE … RETURNING and never reads tasks: one
round trip before publishing instead of two.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COLUMNS = ("type", "queue", "timeout_seconds")


def upgrade() -> None:
    with op.batch_alter_table("outbox") as batch:
        batch.add_column(sa.Column("type", sa.String(length=200), nullable=True))
        batch.add_column(sa.Column("queue", sa.String(length=100), nullable=True))
        batch.add_column(sa.Column("timeout_seconds", sa.Integer(), nullable=True))
    # Rows written before this migration: fill them from their tasks; a row whose task
    # is gone could only have been dropped by a worker.
    for column in COLUMNS:
        op.execute(
            f"UPDATE outbox SET {column} = "
            f"(SELECT tasks.{column} FROM tasks WHERE tasks.id = outbox.task_id)"
        )
    op.execute("DELETE FROM outbox WHERE type IS NULL")
    with op.batch_alter_table("outbox") as batch:
        batch.alter_column("type", existing_type=sa.String(length=200), nullable=False)
        batch.alter_column("queue", existing_type=sa.String(length=100), nullable=False)
        batch.alter_column("timeout_seconds", existing_type=sa.Integer(), nullable=False)


def downgrade() -> None:
    with op.batch_alter_table("outbox") as batch:
        for column in reversed(COLUMNS):
            batch.drop_column(column)
