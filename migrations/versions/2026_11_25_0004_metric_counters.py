"""metric_counters: counters relays, sweepers and schedulers push for /metrics

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25 19:12:58.791581
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "metric_counters",
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("label", sa.String(length=200), nullable=False),
        sa.Column("value", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("name", "label", name=op.f("pk_metric_counters")),
    )


def downgrade() -> None:
    op.drop_table("metric_counters")
