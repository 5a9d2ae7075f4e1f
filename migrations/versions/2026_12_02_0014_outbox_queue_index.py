"""the outbox by queue: the relay's take past full queues reads only the queues it takes

``jobplane_outbox_queue_priority_id_idx`` (queue, priority DESC, id). While a queue's
window is full, the relay holds its rows back in the outbox and takes the other queues'
rows past them; without this index that take reads every row held back.

The index reads the outbox once (it is small unless a backlog waits).

Revision ID: 0014
Revises: 0013
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "jobplane_outbox_queue_priority_id_idx",
        "jobplane_outbox",
        ["queue", sa.text("priority DESC"), "id"],
    )


def downgrade() -> None:
    op.drop_index("jobplane_outbox_queue_priority_id_idx", table_name="jobplane_outbox")
