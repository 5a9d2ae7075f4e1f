"""initial schema: tasks, outbox, task_logs, platform_state; outbox NOTIFY on PostgreSQL

Revision ID: 0001
Revises:
Create Date: 2026-11-25 17:41:32.105759
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import jobplane.models

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NOTIFY_FUNCTION = """
CREATE FUNCTION jobplane_outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('jobplane_outbox', '');
    RETURN NULL;
END;
$$
"""
NOTIFY_TRIGGER = """
CREATE TRIGGER outbox_notify AFTER INSERT ON outbox
FOR EACH STATEMENT EXECUTE FUNCTION jobplane_outbox_notify()
"""


def upgrade() -> None:
    op.create_table(
        "outbox",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("task_id", sa.String(length=36), nullable=False),
        sa.Column("dispatch", sa.Integer(), nullable=False),
        sa.Column("available_at", jobplane.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("created_at", jobplane.models.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outbox")),
    )
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.create_index("ix_outbox_available_at_id", ["available_at", "id"], unique=False)

    op.create_table(
        "platform_state",
        sa.Column("key", sa.String(length=100), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.Column("updated_at", jobplane.models.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_platform_state")),
    )
    op.create_table(
        "task_logs",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("task_id", sa.String(length=36), nullable=False),
        sa.Column("level", sa.String(length=10), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("created_at", jobplane.models.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_task_logs")),
    )
    with op.batch_alter_table("task_logs", schema=None) as batch_op:
        batch_op.create_index("ix_task_logs_task_id_id", ["task_id", "id"], unique=False)

    op.create_table(
        "tasks",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("type", sa.String(length=200), nullable=False),
        sa.Column("queue", sa.String(length=100), nullable=False),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column(
            "params",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("progress", sa.Integer(), nullable=False),
        sa.Column("total", sa.Integer(), nullable=False),
        sa.Column(
            "result",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("retry_count", sa.Integer(), nullable=False),
        sa.Column("max_retries", sa.Integer(), nullable=False),
        sa.Column("timeout_seconds", sa.Integer(), nullable=False),
        sa.Column("run_after", jobplane.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("dispatch", sa.Integer(), nullable=False),
        sa.Column("published_at", jobplane.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column("idempotency_key", sa.String(length=200), nullable=True),
        sa.Column("request_hash", sa.String(length=64), nullable=True),
        sa.Column("cancel_requested", sa.Boolean(), nullable=False),
        sa.Column("heartbeat_at", jobplane.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column("worker", sa.String(length=200), nullable=True),
        sa.Column("created_at", jobplane.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("started_at", jobplane.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column("completed_at", jobplane.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column("cancelled_at", jobplane.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column("schedule_name", sa.String(length=200), nullable=True),
        sa.Column("fire_time", jobplane.models.UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tasks")),
        sa.UniqueConstraint("idempotency_key", name=op.f("uq_tasks_idempotency_key")),
        sa.UniqueConstraint(
            "schedule_name", "fire_time", name=op.f("uq_tasks_schedule_name_fire_time")
        ),
    )
    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.create_index("ix_tasks_created_at", ["created_at"], unique=False)
        batch_op.create_index(
            "ix_tasks_live_heartbeat",
            ["status", "heartbeat_at"],
            unique=False,
            postgresql_where=sa.text("status IN ('pending', 'running')"),
            sqlite_where=sa.text("status IN ('pending', 'running')"),
        )
        batch_op.create_index("ix_tasks_queue_created_at", ["queue", "created_at"], unique=False)
        batch_op.create_index("ix_tasks_status_created_at", ["status", "created_at"], unique=False)
        batch_op.create_index("ix_tasks_type_created_at", ["type", "created_at"], unique=False)

    if op.get_bind().dialect.name == "postgresql":
        # Wake relays when outbox rows are committed: one NOTIFY per statement, and
        # PostgreSQL delivers it only at commit, so a woken relay can see the rows.
        op.execute(NOTIFY_FUNCTION)
        op.execute(NOTIFY_TRIGGER)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS outbox_notify ON outbox")
        op.execute("DROP FUNCTION IF EXISTS jobplane_outbox_notify()")
    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.drop_index("ix_tasks_type_created_at")
        batch_op.drop_index("ix_tasks_status_created_at")
        batch_op.drop_index("ix_tasks_queue_created_at")
        batch_op.drop_index(
            "ix_tasks_live_heartbeat",
            postgresql_where=sa.text("status IN ('pending', 'running')"),
            sqlite_where=sa.text("status IN ('pending', 'running')"),
        )
        batch_op.drop_index("ix_tasks_created_at")

    op.drop_table("tasks")
    with op.batch_alter_table("task_logs", schema=None) as batch_op:
        batch_op.drop_index("ix_task_logs_task_id_id")

    op.drop_table("task_logs")
    op.drop_table("platform_state")
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.drop_index("ix_outbox_available_at_id")

    op.drop_table("outbox")
