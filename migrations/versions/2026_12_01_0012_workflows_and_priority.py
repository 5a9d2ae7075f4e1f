"""workflows and priority: steps as tasks, the order between them, the outbox's priority

- ``jobplane_workflows``: one row per workflow (chain, group, nested), its status and
  the count of its last steps still to complete;
- ``jobplane_workflow_edges``: step ``after_id`` waits for step ``before_id``;
- ``jobplane_tasks``: ``workflow_id``, ``waiting_on`` (steps still to complete before
  this one is published), ``pipe_from`` (whose results it takes) and ``callbacks``
  (tasks to enqueue when it ends);
- ``jobplane_outbox.priority`` and an index to take the highest first.

New columns are nullable or have a constant default: adding them rewrites nothing on
PostgreSQL. The outbox index reads the outbox once (it is small unless a backlog waits).

Revision ID: 0012
Revises: 0011
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
_TIMESTAMP = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "jobplane_workflows",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("shape", _JSON, nullable=False),
        sa.Column("steps", sa.Integer(), nullable=False),
        sa.Column("ends_left", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", _TIMESTAMP, nullable=False),
        sa.Column("updated_at", _TIMESTAMP, nullable=False),
        sa.Column("completed_at", _TIMESTAMP, nullable=True),
        sa.PrimaryKeyConstraint("id", name="jobplane_workflows_pkey"),
    )
    op.create_index("jobplane_workflows_created_at_idx", "jobplane_workflows", ["created_at"])
    op.create_index(
        "jobplane_workflows_status_created_at_idx", "jobplane_workflows", ["status", "created_at"]
    )
    op.create_table(
        "jobplane_workflow_edges",
        sa.Column("before_id", sa.String(36), nullable=False),
        sa.Column("after_id", sa.String(36), nullable=False),
        sa.PrimaryKeyConstraint("before_id", "after_id", name="jobplane_workflow_edges_pkey"),
    )
    op.create_index(
        "jobplane_workflow_edges_after_id_idx", "jobplane_workflow_edges", ["after_id"]
    )
    # Plain ADD COLUMN, also on SQLite (a batch would copy the table, and its triggers
    # with it would go).
    op.add_column("jobplane_tasks", sa.Column("workflow_id", sa.String(36), nullable=True))
    op.add_column(
        "jobplane_tasks",
        sa.Column("waiting_on", sa.Integer(), nullable=False, server_default=sa.text("0")),
    )
    op.add_column("jobplane_tasks", sa.Column("pipe_from", _JSON, nullable=True))
    op.add_column("jobplane_tasks", sa.Column("callbacks", _JSON, nullable=True))
    op.create_index(
        "jobplane_tasks_workflow_id_idx",
        "jobplane_tasks",
        ["workflow_id"],
        postgresql_where=sa.text("workflow_id IS NOT NULL"),
        sqlite_where=sa.text("workflow_id IS NOT NULL"),
    )
    op.add_column(
        "jobplane_outbox",
        sa.Column("priority", sa.Integer(), nullable=False, server_default=sa.text("0")),
    )
    op.create_index(
        "jobplane_outbox_priority_id_idx", "jobplane_outbox", [sa.text("priority DESC"), "id"]
    )


def downgrade() -> None:
    # Plain DROP COLUMN (SQLite 3.35+ has it), for the reason given in ``upgrade``.
    op.drop_index("jobplane_outbox_priority_id_idx", table_name="jobplane_outbox")
    op.drop_column("jobplane_outbox", "priority")
    op.drop_index("jobplane_tasks_workflow_id_idx", table_name="jobplane_tasks")
    for column in ("callbacks", "pipe_from", "waiting_on", "workflow_id"):
        op.drop_column("jobplane_tasks", column)
    op.drop_table("jobplane_workflow_edges")
    op.drop_table("jobplane_workflows")
