"""jobplane_ prefix: every table, index, constraint, sequence and trigger renamed, data kept

jobplane shares the user's database: a table called ``tasks`` or an index called
``ix_tasks_created_at`` is likely to be the user's own. Every object becomes
``jobplane_…``, and the relay's NOTIFY channel ``jobplane_outbox_wakeup`` (no longer the
new table's name). Rows stay where they are: PostgreSQL renames in place; SQLite renames
the tables, then copies each into a table with the new constraint names (batch mode).

The version table moved too (``jobplane_alembic_version``); ``jobplane.migrate`` carries
an existing deployment's version over from ``alembic_version`` before this runs.

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: Every table (old name) and its primary key's columns: ``pk_<old>`` becomes
#: ``jobplane_<old>_pkey``.
PRIMARY_KEYS = {
    "tasks": ["id"],
    "outbox": ["id"],
    "task_logs": ["id"],
    "schedules": ["name"],
    "schedule_runs": ["schedule_name", "fire_time"],
    "metric_counters": ["name", "label"],
    "platform_state": ["key"],
}
#: (table, old name, new name, columns) of each unique constraint.
UNIQUES = [
    (
        "tasks",
        "uq_tasks_idempotency_key",
        "jobplane_tasks_idempotency_key_key",
        ["idempotency_key"],
    ),
    (
        "tasks",
        "uq_tasks_schedule_name_fire_time",
        "jobplane_tasks_schedule_name_fire_time_key",
        ["schedule_name", "fire_time"],
    ),
]
#: (table, old name, new name, columns, partial-index predicate) of each index.
INDEXES = [
    ("tasks", "ix_tasks_created_at", "jobplane_tasks_created_at_idx", ["created_at"], None),
    (
        "tasks",
        "ix_tasks_status_created_at",
        "jobplane_tasks_status_created_at_idx",
        ["status", "created_at"],
        None,
    ),
    (
        "tasks",
        "ix_tasks_type_created_at",
        "jobplane_tasks_type_created_at_idx",
        ["type", "created_at"],
        None,
    ),
    (
        "tasks",
        "ix_tasks_queue_created_at",
        "jobplane_tasks_queue_created_at_idx",
        ["queue", "created_at"],
        None,
    ),
    (
        "tasks",
        "ix_tasks_waiting",
        "jobplane_tasks_waiting_idx",
        ["type", "waiting_since"],
        "waiting_since IS NOT NULL",
    ),
    (
        "tasks",
        "ix_tasks_live_heartbeat",
        "jobplane_tasks_live_heartbeat_idx",
        ["status", "heartbeat_at"],
        "status IN ('pending', 'running')",
    ),
    (
        "outbox",
        "ix_outbox_available_at_id",
        "jobplane_outbox_available_at_id_idx",
        ["available_at", "id"],
        None,
    ),
    (
        "task_logs",
        "ix_task_logs_task_id_id",
        "jobplane_task_logs_task_id_id_idx",
        ["task_id", "id"],
        None,
    ),
    (
        "schedule_runs",
        "ix_schedule_runs_fire_time",
        "jobplane_schedule_runs_fire_time_idx",
        ["fire_time"],
        None,
    ),
]
#: Tables whose id comes from a sequence on PostgreSQL (BIGSERIAL: ``<table>_id_seq``).
SEQUENCES = ("outbox", "task_logs")

NOTIFY_FUNCTION = """
CREATE OR REPLACE FUNCTION jobplane_outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('{channel}', '');
    RETURN NULL;
END;
$$
"""


def upgrade() -> None:
    for table in PRIMARY_KEYS:
        _rename(table, up=True)
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "ALTER TRIGGER outbox_notify ON jobplane_outbox RENAME TO jobplane_outbox_notify"
        )
        op.execute(NOTIFY_FUNCTION.format(channel="jobplane_outbox_wakeup"))


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(NOTIFY_FUNCTION.format(channel="jobplane_outbox"))
        op.execute(
            "ALTER TRIGGER jobplane_outbox_notify ON jobplane_outbox RENAME TO outbox_notify"
        )
    for table in PRIMARY_KEYS:
        _rename(table, up=False)


def _rename(table: str, *, up: bool) -> None:
    """Rename one table (``up``: to its new name, else back) with its constraints,
    indexes and sequence, rows kept."""

    def pair(old: str, new: str) -> tuple[str, str]:
        return (old, new) if up else (new, old)

    source, target = pair(table, f"jobplane_{table}")
    pk = pair(f"pk_{table}", f"jobplane_{table}_pkey")
    constraints = [(*pk, "primary", PRIMARY_KEYS[table])]
    constraints += [
        (*pair(old, new), "unique", cols) for t, old, new, cols in UNIQUES if t == table
    ]
    indexes = [(*pair(old, new), cols, where) for t, old, new, cols, where in INDEXES if t == table]
    op.rename_table(source, target)
    if op.get_bind().dialect.name != "postgresql":
        _rebuild(target, constraints, indexes)
        return
    # PostgreSQL renames in place: the rows, the indexes' pages, the sequence's position
    # and the column default calling it (by its oid) stay as they were.
    for old, new, _, _ in constraints:
        op.execute(f"ALTER TABLE {target} RENAME CONSTRAINT {old} TO {new}")
    for old, new, _, _ in indexes:
        op.execute(f"ALTER INDEX {old} RENAME TO {new}")
    if table in SEQUENCES:
        op.execute(f"ALTER SEQUENCE {source}_id_seq RENAME TO {target}_id_seq")


def _rebuild(table: str, constraints: list[Any], indexes: list[Any]) -> None:
    # SQLite keeps constraint names inside the table's CREATE statement and cannot
    # rename an index: batch mode copies the table into one made with the new names.
    with op.batch_alter_table(table, recreate="always") as batch:
        for old, new, kind, columns in constraints:
            batch.drop_constraint(old, type_=kind)
            if kind == "primary":
                batch.create_primary_key(new, columns)
            else:
                batch.create_unique_constraint(new, columns)
        for old, new, columns, where in indexes:
            batch.drop_index(old)
            predicate = None if where is None else sa.text(where)
            batch.create_index(new, columns, sqlite_where=predicate)
