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
    ("tasks", "uq_tasks_idempotency_key", "jobplane_tasks_idempotency_key_key", ["idempotency_key"]),
    (
        "tasks",
        "uq_tasks_schedule_name_fire_time",
        "jobplane_tasks_schedule_name_fire_time_key",
        ["schedule_name", "fire_time"],
    ),
]
LIVE = "status IN ('pending', 'running')"
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
        LIVE,
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


class Names:
    """The names of one table's objects before (``old=True``) or after this revision."""

    def __init__(self, table: str, *, old: bool) -> None:
        self.old = old
        self.table = table if old else f"jobplane_{table}"
        self.pk = f"pk_{table}" if old else f"jobplane_{table}_pkey"
        self.sequence = f"{self.table}_id_seq"
        self.uniques = {u[2]: u[1 if old else 2] for u in UNIQUES if u[0] == table}
        self.indexes = {i[2]: i[1 if old else 2] for i in INDEXES if i[0] == table}


def upgrade() -> None:
    for table in PRIMARY_KEYS:
        _rename(table, Names(table, old=True), Names(table, old=False))
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
        _rename(table, Names(table, old=False), Names(table, old=True))


def _rename(table: str, source: Names, target: Names) -> None:
    """Rename one table with its constraints, indexes and sequence, rows kept."""
    op.rename_table(source.table, target.table)
    if op.get_bind().dialect.name == "postgresql":
        _rename_in_place(table, source, target)
    else:
        _rebuild(table, source, target)


def _rename_in_place(table: str, source: Names, target: Names) -> None:
    # PostgreSQL renames in place: the rows, the indexes' pages, the sequence's position
    # and the column default calling it (by its oid) stay as they were.
    constraints = [(source.pk, target.pk)]
    constraints += [(source.uniques[key], target.uniques[key]) for key in source.uniques]
    for old, new in constraints:
        op.execute(f"ALTER TABLE {target.table} RENAME CONSTRAINT {old} TO {new}")
    for key in source.indexes:
        op.execute(f"ALTER INDEX {source.indexes[key]} RENAME TO {target.indexes[key]}")
    if table in SEQUENCES:
        op.execute(f"ALTER SEQUENCE {source.sequence} RENAME TO {target.sequence}")


def _rebuild(table: str, source: Names, target: Names) -> None:
    # SQLite keeps constraint names inside the table's CREATE statement and cannot
    # rename an index: batch mode copies the table into one made with the new names.
    with op.batch_alter_table(target.table, recreate="always") as batch:
        batch.drop_constraint(source.pk, type_="primary")
        batch.create_primary_key(target.pk, PRIMARY_KEYS[table])
        for _, _, key, columns in (u for u in UNIQUES if u[0] == table):
            batch.drop_constraint(source.uniques[key], type_="unique")
            batch.create_unique_constraint(target.uniques[key], columns)
        for _, _, key, columns, where in (i for i in INDEXES if i[0] == table):
            batch.drop_index(source.indexes[key])
            predicate = None if where is None else sa.text(where)
            batch.create_index(target.indexes[key], columns, sqlite_where=predicate)
