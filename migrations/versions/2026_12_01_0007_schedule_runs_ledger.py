"""schedule_runs: the runs ledger, unique on (schedule, fire time), apart from tasks

Retention deletes old tasks; the ledger keeps which runs happened for as long as any
schedule's catch-up may look at them, so catch-up never enqueues a run again once its
task is gone. Filled from the scheduled runs' tasks still kept.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import jobplane.models

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "schedule_runs",
        sa.Column("schedule_name", sa.String(length=200), nullable=False),
        sa.Column("fire_time", jobplane.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("task_id", sa.String(length=36), nullable=True),
        sa.Column("recorded_at", jobplane.models.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("schedule_name", "fire_time", name=op.f("pk_schedule_runs")),
    )
    op.create_index("ix_schedule_runs_fire_time", "schedule_runs", ["fire_time"])
    # Every run recorded so far is a task with a fire time (tasks are unique on it);
    # runs started by hand have none and are no run of the cron schedule.
    op.execute(
        "INSERT INTO schedule_runs (schedule_name, fire_time, task_id, recorded_at) "
        "SELECT schedule_name, fire_time, id, created_at FROM tasks "
        "WHERE schedule_name IS NOT NULL AND fire_time IS NOT NULL"
    )


def downgrade() -> None:
    op.drop_index("ix_schedule_runs_fire_time", table_name="schedule_runs")
    op.drop_table("schedule_runs")
