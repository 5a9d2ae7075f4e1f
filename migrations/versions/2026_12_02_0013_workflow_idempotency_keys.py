"""workflow idempotency keys: a workflow submitted again under its key is not written twice

- ``jobplane_workflows.idempotency_key``: the ``Idempotency-Key`` it was submitted with,
  unique (``jobplane_workflows_idempotency_key_key``), so that of two concurrent
  submissions under one key only one is written;
- ``jobplane_workflows.request_hash``: the fingerprint of the workflow first submitted
  under that key, to tell a repeat from another workflow.

Both are nullable: adding them rewrites nothing on PostgreSQL. The uniqueness is a
unique index rather than a constraint: SQLite adds neither a UNIQUE column nor a
constraint without copying the table.

Revision ID: 0013
Revises: 0012
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_KEY_INDEX = "jobplane_workflows_idempotency_key_key"


def upgrade() -> None:
    # Plain ADD COLUMN, also on SQLite (a batch would copy the table).
    op.add_column(
        "jobplane_workflows", sa.Column("idempotency_key", sa.String(200), nullable=True)
    )
    op.add_column("jobplane_workflows", sa.Column("request_hash", sa.String(64), nullable=True))
    op.create_index(_KEY_INDEX, "jobplane_workflows", ["idempotency_key"], unique=True)


def downgrade() -> None:
    # Plain DROP COLUMN (SQLite 3.35+ has it), for the reason given in ``upgrade``.
    op.drop_index(_KEY_INDEX, table_name="jobplane_workflows")
    op.drop_column("jobplane_workflows", "request_hash")
    op.drop_column("jobplane_workflows", "idempotency_key")
