"""task done NOTIFY in one pass: the trigger function groups the ids into payloads as
it numbers them

Revision 0009's function sliced one array of every finished id, 200 at a time; a slice
of a text array walks from its start, so a statement finishing N tasks cost N²/200: a
million in one statement took minutes. Same triggers, same channel and payloads (at most
200 ids each). PostgreSQL only.

Revision ID: 0011
Revises: 0010
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# As jobplane.models.TASK_DONE_NOTIFY_DDL makes it for a new database (a migration keeps
# its own copy: the models may change later, this revision may not).
NOTIFY_FUNCTION = """CREATE OR REPLACE FUNCTION jobplane_tasks_notify_done() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    payload text;
BEGIN
    IF TG_OP = 'INSERT' THEN
        FOR payload IN
            SELECT string_agg(d.id, ',') FROM (
                SELECT n.id, (row_number() OVER () - 1) / 200 AS chunk
                FROM new_rows n WHERE n.status IN ('cancelled', 'completed', 'failed', 'skipped')
            ) d GROUP BY d.chunk
        LOOP
            PERFORM pg_notify('jobplane_task_done', payload);
        END LOOP;
    ELSE
        FOR payload IN
            SELECT string_agg(d.id, ',') FROM (
                SELECT n.id, (row_number() OVER () - 1) / 200 AS chunk
                FROM new_rows n JOIN old_rows o ON o.id = n.id
                WHERE n.status IN ('cancelled', 'completed', 'failed', 'skipped') AND o.status IS DISTINCT FROM n.status
            ) d GROUP BY d.chunk
        LOOP
            PERFORM pg_notify('jobplane_task_done', payload);
        END LOOP;
    END IF;
    RETURN NULL;
END;
$$"""

#: Revision 0009's, for the downgrade.
PREVIOUS_FUNCTION = """CREATE OR REPLACE FUNCTION jobplane_tasks_notify_done() RETURNS trigger LANGUAGE plpgsql AS $$
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


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(NOTIFY_FUNCTION)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(PREVIOUS_FUNCTION)
