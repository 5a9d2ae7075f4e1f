"""task done NOTIFY: tasks that become terminal wake the processes waiting for them

Two statement-level triggers on ``jobplane_tasks`` (after INSERT, after UPDATE) send
``NOTIFY jobplane_task_done`` with the ids of the rows whose status became completed,
failed, cancelled or skipped, 200 ids to a payload. PostgreSQL only: on SQLite waiters
poll.

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# As jobplane.models.TASK_DONE_NOTIFY_DDL makes them for a new database (a migration
# keeps its own copy: the models may change later, this revision may not).
NOTIFY_FUNCTION = """CREATE FUNCTION jobplane_tasks_notify_done() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    done text[];
BEGIN
    IF TG_OP = 'INSERT' THEN
        done := ARRAY(SELECT n.id FROM new_rows n WHERE n.status IN ('cancelled', 'completed', 'failed', 'skipped'));
    ELSE
        done := ARRAY(
            SELECT n.id FROM new_rows n JOIN old_rows o ON o.id = n.id
            WHERE n.status IN ('cancelled', 'completed', 'failed', 'skipped') AND o.status IS DISTINCT FROM n.status
        );
    END IF;
    FOR i IN 1 .. coalesce(array_length(done, 1), 0) BY 200 LOOP
        PERFORM pg_notify(
            'jobplane_task_done',
            array_to_string(done[i:i + 199], ',')
        );
    END LOOP;
    RETURN NULL;
END;
$$"""
TRIGGERS = {
    "jobplane_tasks_notify_done_on_insert": "AFTER INSERT ON jobplane_tasks "
    "REFERENCING NEW TABLE AS new_rows",
    "jobplane_tasks_notify_done_on_update": "AFTER UPDATE ON jobplane_tasks "
    "REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows",
}


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(NOTIFY_FUNCTION)
    for name, when in TRIGGERS.items():
        op.execute(
            f"CREATE TRIGGER {name} {when} "
            "FOR EACH STATEMENT EXECUTE FUNCTION jobplane_tasks_notify_done()"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for name in TRIGGERS:
        op.execute(f"DROP TRIGGER {name} ON jobplane_tasks")
    op.execute("DROP FUNCTION jobplane_tasks_notify_done()")
