"""admin reads at scale: task counts kept by triggers, updated_at, the workers seen

- ``jobplane_task_counts``: triggers on ``jobplane_tasks`` append the change each
  statement made to the number of tasks (and their retries) by type, queue, schedule
  and status; the admin stats and /metrics add these rows up instead of counting the
  tasks. Filled here from the tasks kept, under the triggers' lock.
- ``jobplane_tasks.updated_at`` and its index: when a task last changed status (null for
  the rows already there); the dashboard's live stream reads changes from it.
- ``jobplane_tasks_id_prefix_idx`` (PostgreSQL): the id search by prefix, in any collation.
- ``jobplane_workers``: each worker process and when it last reported.

Creating the indexes reads the whole table once and blocks writes to it meanwhile (at
ten million tasks, expect tens of seconds).

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# As jobplane.models makes them for a new database (a migration keeps its own copy: the
# models may change later, this revision may not).
COUNT_FUNCTION = """CREATE FUNCTION jobplane_tasks_count() RETURNS trigger LANGUAGE plpgsql
SET search_path FROM CURRENT AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO jobplane_task_counts (type, queue, schedule, status, tasks, retries)
        SELECT n.type, n.queue, coalesce(n.schedule_name, ''), n.status,
               count(*), sum(n.retry_count)
        FROM new_rows n GROUP BY 1, 2, 3, 4;
    ELSIF TG_OP = 'DELETE' THEN
        INSERT INTO jobplane_task_counts (type, queue, schedule, status, tasks, retries)
        SELECT o.type, o.queue, coalesce(o.schedule_name, ''), o.status,
               -count(*), -sum(o.retry_count)
        FROM old_rows o GROUP BY 1, 2, 3, 4;
    ELSIF TG_OP = 'UPDATE' THEN
        INSERT INTO jobplane_task_counts (type, queue, schedule, status, tasks, retries)
        SELECT d.type, d.queue, d.schedule, d.status, sum(d.tasks), sum(d.retries)
        FROM (
            SELECT n.type, n.queue, coalesce(n.schedule_name, '') AS schedule, n.status,
                   1 AS tasks, n.retry_count AS retries,
                   o.type AS old_type, o.queue AS old_queue,
                   coalesce(o.schedule_name, '') AS old_schedule, o.status AS old_status,
                   o.retry_count AS old_retries
            FROM new_rows n JOIN old_rows o ON o.id = n.id
            WHERE (n.status, n.retry_count, n.type, n.queue, n.schedule_name)
                  IS DISTINCT FROM (o.status, o.retry_count, o.type, o.queue, o.schedule_name)
        ) c
        CROSS JOIN LATERAL (
            VALUES (c.type, c.queue, c.schedule, c.status, 1, c.retries),
                   (c.old_type, c.old_queue, c.old_schedule, c.old_status, -1, -c.old_retries)
        ) AS d (type, queue, schedule, status, tasks, retries)
        GROUP BY 1, 2, 3, 4
        HAVING sum(d.tasks) <> 0 OR sum(d.retries) <> 0;
    ELSE
        DELETE FROM jobplane_task_counts;
    END IF;
    RETURN NULL;
END;
$$"""
PG_TRIGGERS = (
    "CREATE TRIGGER jobplane_tasks_count_on_insert AFTER INSERT ON jobplane_tasks REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION jobplane_tasks_count()",
    "CREATE TRIGGER jobplane_tasks_count_on_update AFTER UPDATE ON jobplane_tasks REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION jobplane_tasks_count()",
    "CREATE TRIGGER jobplane_tasks_count_on_delete AFTER DELETE ON jobplane_tasks REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION jobplane_tasks_count()",
    "CREATE TRIGGER jobplane_tasks_count_on_truncate AFTER TRUNCATE ON jobplane_tasks FOR EACH STATEMENT EXECUTE FUNCTION jobplane_tasks_count()",
)
SQLITE_TRIGGERS = (
    "CREATE TRIGGER jobplane_tasks_count_on_insert AFTER INSERT ON jobplane_tasks BEGIN INSERT INTO jobplane_task_counts (type, queue, schedule, status, tasks, retries) VALUES (NEW.type, NEW.queue, coalesce(NEW.schedule_name, ''), NEW.status, 1, NEW.retry_count); END",
    "CREATE TRIGGER jobplane_tasks_count_on_update AFTER UPDATE OF status, retry_count, type, queue, schedule_name ON jobplane_tasks WHEN OLD.status IS NOT NEW.status OR OLD.retry_count IS NOT NEW.retry_count OR OLD.type IS NOT NEW.type OR OLD.queue IS NOT NEW.queue OR OLD.schedule_name IS NOT NEW.schedule_name BEGIN INSERT INTO jobplane_task_counts (type, queue, schedule, status, tasks, retries) VALUES (OLD.type, OLD.queue, coalesce(OLD.schedule_name, ''), OLD.status, -1, -OLD.retry_count), (NEW.type, NEW.queue, coalesce(NEW.schedule_name, ''), NEW.status, 1, NEW.retry_count); END",
    "CREATE TRIGGER jobplane_tasks_count_on_delete AFTER DELETE ON jobplane_tasks BEGIN INSERT INTO jobplane_task_counts (type, queue, schedule, status, tasks, retries) VALUES (OLD.type, OLD.queue, coalesce(OLD.schedule_name, ''), OLD.status, -1, -OLD.retry_count); END",
)
TRIGGER_NAMES = (
    "jobplane_tasks_count_on_insert",
    "jobplane_tasks_count_on_update",
    "jobplane_tasks_count_on_delete",
)
FILL_COUNTS = (
    "INSERT INTO jobplane_task_counts (type, queue, schedule, status, tasks, retries) "
    "SELECT type, queue, coalesce(schedule_name, ''), status, count(*), sum(retry_count) "
    "FROM jobplane_tasks GROUP BY 1, 2, 3, 4"
)


def upgrade() -> None:
    postgresql = op.get_bind().dialect.name == "postgresql"
    op.add_column("jobplane_tasks", sa.Column("updated_at", sa.DateTime(timezone=True)))
    op.create_index("jobplane_tasks_updated_at_idx", "jobplane_tasks", ["updated_at"])
    if postgresql:
        op.create_index(
            "jobplane_tasks_id_prefix_idx",
            "jobplane_tasks",
            ["id"],
            postgresql_ops={"id": "text_pattern_ops"},
        )
    op.create_table(
        "jobplane_task_counts",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column("type", sa.String(length=200), nullable=False),
        sa.Column("queue", sa.String(length=100), nullable=False),
        sa.Column("schedule", sa.String(length=200), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("tasks", sa.BigInteger(), nullable=False),
        sa.Column("retries", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="jobplane_task_counts_pkey"),
    )
    if postgresql:
        op.execute(COUNT_FUNCTION)
        for statement in PG_TRIGGERS:
            op.execute(statement)
    else:
        for statement in SQLITE_TRIGGERS:
            op.execute(statement)
    # After the triggers: their lock holds off other writers until this commits, so no
    # change falls between the fill and the first trigger.
    op.execute(FILL_COUNTS)
    op.create_table(
        "jobplane_workers",
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name="jobplane_workers_pkey"),
    )


def downgrade() -> None:
    postgresql = op.get_bind().dialect.name == "postgresql"
    op.drop_table("jobplane_workers")
    if postgresql:
        for name in (*TRIGGER_NAMES, "jobplane_tasks_count_on_truncate"):
            op.execute(f"DROP TRIGGER {name} ON jobplane_tasks")
        op.execute("DROP FUNCTION jobplane_tasks_count()")
        op.drop_index("jobplane_tasks_id_prefix_idx", table_name="jobplane_tasks")
    else:
        for name in TRIGGER_NAMES:
            op.execute(f"DROP TRIGGER {name}")
    op.drop_table("jobplane_task_counts")
    op.drop_index("jobplane_tasks_updated_at_idx", table_name="jobplane_tasks")
    op.drop_column("jobplane_tasks", "updated_at")
