"""The database schema: tasks, their outbox rows, their log lines, the runs ledger, and
small state.

Timestamps are stored timezone-aware and always come back as UTC, on PostgreSQL and on
SQLite alike (``UTCDateTime``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Connection,
    DateTime,
    Dialect,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    event,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from jobplane.domain import TERMINAL_STATES

#: Every table is called ``jobplane_…``, and every name below starts with its table's,
#: so each object jobplane creates in the user's database carries the prefix
#: (PostgreSQL's own suffixes: a unique constraint is ``…_key``, a primary key ``…_pkey``).
PREFIX = "jobplane_"
NAMING = {
    "ix": "%(table_name)s_%(column_0_N_name)s_idx",
    "uq": "%(table_name)s_%(column_0_N_name)s_key",
    "ck": "%(table_name)s_%(constraint_name)s_check",
    "fk": "%(table_name)s_%(column_0_N_name)s_fkey",
    "pk": "%(table_name)s_pkey",
}


#: The ``info`` key of an object made on one database only (with ``ddl_if``), which
#: Alembic's comparison must then skip on the others (``migrations/env.py``).
ONLY_ON = "jobplane_only_on"


#: Indexes Alembic's comparison skips, on either side: it cannot compare an index on an
#: expression (a descending column) on every database, and would report it changed.
#: ``tests/migrations`` checks them by name instead.
NOT_COMPARED = frozenset(
    {"jobplane_outbox_priority_id_idx", "jobplane_outbox_queue_priority_id_idx"}
)


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC timestamp, also on SQLite (which keeps no offset)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


JSONDocument = JSON().with_variant(JSONB(), "postgresql")
#: A JSON document or SQL NULL: None is stored as NULL, not as JSON ``null``, so that
#: ``IS NULL`` says whether there is one (on SQLite too).
OptionalJSONDocument = JSON(none_as_null=True).with_variant(JSONB(none_as_null=True), "postgresql")
# SQLite only auto-increments an INTEGER PRIMARY KEY.
BigId = BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class Task(Base):
    """One job to run: the source of truth for its state."""

    __tablename__ = "jobplane_tasks"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    type: Mapped[str] = mapped_column(String(200))
    queue: Mapped[str] = mapped_column(String(100))
    priority: Mapped[int] = mapped_column(Integer, default=0)
    params: Mapped[dict[str, Any]] = mapped_column(JSONDocument)
    status: Mapped[str] = mapped_column(String(16))
    progress: Mapped[int] = mapped_column(Integer, default=0)
    total: Mapped[int] = mapped_column(Integer, default=0)
    result: Mapped[Any | None] = mapped_column(JSONDocument, nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    #: How many times a worker started the body.
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    #: How many of those attempts were retries of a failed one.
    retry_count: Mapped[int] = mapped_column(Integer, default=0)
    max_retries: Mapped[int] = mapped_column(Integer)
    timeout_seconds: Mapped[int] = mapped_column(Integer)
    run_after: Mapped[datetime] = mapped_column(UTCDateTime)
    #: Bumped at every (re)publication; a message claims only with the current one.
    dispatch: Mapped[int] = mapped_column(Integer, default=1)
    idempotency_key: Mapped[str | None] = mapped_column(String(200), nullable=True, unique=True)
    #: sha256 of the submission an Idempotency-Key was first used with.
    request_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    #: Set while a pending task waits for a slot of its job type's concurrency limit
    #: (it then has no message anywhere; a finishing task of its type wakes it).
    waiting_since: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    worker: Mapped[str | None] = mapped_column(String(200), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    cancelled_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    schedule_name: Mapped[str | None] = mapped_column(String(200), nullable=True)
    fire_time: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    #: When the task last changed status (its creation included): the dashboard's live
    #: stream reads what changed since its previous look from this column's index.
    #: Every statement that writes ``status`` sets it (``jobplane.store.guards``);
    #: null for rows older than the column.
    updated_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    #: The workflow this task is a step of (``Workflow``), or null for a task of its own.
    workflow_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    #: How many of the steps before this one have still to complete. A pending step
    #: waiting on any has no outbox row and no message; the transaction that completes
    #: the last of them publishes it (``jobplane.store.workflows``).
    waiting_on: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    #: For a step that takes the result before it (``pipeResult``): whose results, as a
    #: tree of task ids (a list stands for the list of its members' results), set as
    #: the ``result`` param when the step is published.
    pipe_from: Mapped[Any | None] = mapped_column(OptionalJSONDocument, nullable=True)
    #: The tasks to enqueue when this one ends: ``{"onSuccess": submission,
    #: "onFailure": submission}``, either optional (``jobplane.callbacks``).
    callbacks: Mapped[dict[str, Any] | None] = mapped_column(OptionalJSONDocument, nullable=True)

    __table_args__ = (
        UniqueConstraint("schedule_name", "fire_time"),
        # A workflow's steps.
        Index(
            "jobplane_tasks_workflow_id_idx",
            "workflow_id",
            postgresql_where=text("workflow_id IS NOT NULL"),
            sqlite_where=text("workflow_id IS NOT NULL"),
        ),
        # Admin list: newest first, optionally by status / type / queue.
        Index("jobplane_tasks_created_at_idx", "created_at"),
        Index("jobplane_tasks_status_created_at_idx", "status", "created_at"),
        Index("jobplane_tasks_type_created_at_idx", "type", "created_at"),
        Index("jobplane_tasks_queue_created_at_idx", "queue", "created_at"),
        # Waking the oldest task waiting for a slot of its type.
        Index(
            "jobplane_tasks_waiting_idx",
            "type",
            "waiting_since",
            postgresql_where=text("waiting_since IS NOT NULL"),
            sqlite_where=text("waiting_since IS NOT NULL"),
        ),
        # The rescuer's scans only look at live tasks.
        Index(
            "jobplane_tasks_live_heartbeat_idx",
            "status",
            "heartbeat_at",
            postgresql_where=text("status IN ('pending', 'running')"),
            sqlite_where=text("status IN ('pending', 'running')"),
        ),
        # The live stream: what changed lately, newest first.
        Index("jobplane_tasks_updated_at_idx", "updated_at"),
        # Search by the start of an id. On PostgreSQL the primary key's index follows the
        # database's collation, where a prefix need not be one range; the pattern ops
        # index serves ``LIKE 'prefix%'`` in any collation. SQLite's primary key is
        # binary-ordered, so a range on it serves the same search there.
        Index(
            "jobplane_tasks_id_prefix_idx",
            "id",
            postgresql_ops={"id": "text_pattern_ops"},
            info={ONLY_ON: "postgresql"},
        ).ddl_if(dialect="postgresql"),
    )


class Outbox(Base):
    """A committed promise to publish one task's message; the relay deletes it once sent."""

    __tablename__ = "jobplane_outbox"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    task_id: Mapped[str] = mapped_column(String(36))
    #: The task's dispatch number at the time this row was written.
    dispatch: Mapped[int] = mapped_column(Integer)
    #: Not published before this time (retries and delayed submissions).
    available_at: Mapped[datetime] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    #: What the message needs from the task (its actor, queue and time limit), copied
    #: here so that the relay takes a batch with one statement and never reads tasks.
    type: Mapped[str] = mapped_column(String(200))
    queue: Mapped[str] = mapped_column(String(100))
    timeout_seconds: Mapped[int] = mapped_column(Integer)
    #: The task's priority: the relay publishes higher ones first.
    priority: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))

    __table_args__ = (
        Index("jobplane_outbox_available_at_id_idx", "available_at", "id"),
        # The relay's take: the highest priority first, then the oldest.
        Index("jobplane_outbox_priority_id_idx", text("priority DESC"), "id"),
        # The same take past full queues, queue by queue: without it, a look past a
        # queue whose window is full reads every row that queue holds back.
        Index("jobplane_outbox_queue_priority_id_idx", "queue", text("priority DESC"), "id"),
    )


#: The relay's LISTEN channel: named apart from the table whose inserts it announces, as
#: one name for a channel and a table would read as one object.
OUTBOX_CHANNEL = "jobplane_outbox_wakeup"
#: On PostgreSQL, committed outbox inserts wake the relays: one NOTIFY per inserting
#: statement, delivered only at commit, so a woken relay can see the rows. Names are left
#: unqualified: ``jobplane migrate`` creates them with the schema as its search path.
OUTBOX_NOTIFY_DDL = (
    f"""CREATE FUNCTION jobplane_outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('{OUTBOX_CHANNEL}', '');
    RETURN NULL;
END;
$$""",
    "CREATE TRIGGER jobplane_outbox_notify AFTER INSERT ON jobplane_outbox "
    "FOR EACH STATEMENT EXECUTE FUNCTION jobplane_outbox_notify()",
)


@event.listens_for(Outbox.__table__, "after_create")
def _create_outbox_notify(_table: Any, connection: Connection, **_: Any) -> None:
    # For a new database, made from these models (``jobplane.migrate``); an existing
    # one got the trigger from its migrations.
    if connection.dialect.name == "postgresql":
        for statement in OUTBOX_NOTIFY_DDL:
            connection.exec_driver_sql(statement)


#: Waiters' LISTEN channel (``TaskHandle.wait``, ``GET /api/tasks/{id}?wait=``): its
#: payloads are the ids of tasks that became terminal, comma-joined.
TASK_DONE_CHANNEL = "jobplane_task_done"
#: Most ids in one payload: 200 ids of 36 characters and their commas stay well under
#: PostgreSQL's 8000-byte limit on a payload.
TASK_DONE_IDS_PER_PAYLOAD = 200
_TERMINAL_SQL = ", ".join(f"'{status.value}'" for status in sorted(TERMINAL_STATES))
#: On PostgreSQL, every statement that makes tasks terminal (a batch of completions, a
#: failure, a cancel, a skipped run inserted as such) notifies the ids it finished, so
#: no code path has to remember to. Statement-level triggers with transition tables:
#: one call per statement whatever its row count, and a row counts only when its status
#: changed to a terminal one. The ids are numbered and grouped into payloads in one pass:
#: slicing one array of them (text elements are found by walking from the start) made a
#: statement finishing a million tasks take minutes. PostgreSQL allows a transition
#: table on a trigger of one event only: hence two triggers sharing the function.
#: Delivered at commit; names unqualified, as for ``OUTBOX_NOTIFY_DDL``.
TASK_DONE_NOTIFY_DDL = (
    f"""CREATE FUNCTION jobplane_tasks_notify_done() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    payload text;
BEGIN
    IF TG_OP = 'INSERT' THEN
        FOR payload IN
            SELECT string_agg(d.id, ',') FROM (
                SELECT n.id, (row_number() OVER () - 1) / {TASK_DONE_IDS_PER_PAYLOAD} AS chunk
                FROM new_rows n WHERE n.status IN ({_TERMINAL_SQL})
            ) d GROUP BY d.chunk
        LOOP
            PERFORM pg_notify('{TASK_DONE_CHANNEL}', payload);
        END LOOP;
    ELSE
        FOR payload IN
            SELECT string_agg(d.id, ',') FROM (
                SELECT n.id, (row_number() OVER () - 1) / {TASK_DONE_IDS_PER_PAYLOAD} AS chunk
                FROM new_rows n JOIN old_rows o ON o.id = n.id
                WHERE n.status IN ({_TERMINAL_SQL}) AND o.status IS DISTINCT FROM n.status
            ) d GROUP BY d.chunk
        LOOP
            PERFORM pg_notify('{TASK_DONE_CHANNEL}', payload);
        END LOOP;
    END IF;
    RETURN NULL;
END;
$$""",
    "CREATE TRIGGER jobplane_tasks_notify_done_on_insert AFTER INSERT ON jobplane_tasks "
    "REFERENCING NEW TABLE AS new_rows "
    "FOR EACH STATEMENT EXECUTE FUNCTION jobplane_tasks_notify_done()",
    "CREATE TRIGGER jobplane_tasks_notify_done_on_update AFTER UPDATE ON jobplane_tasks "
    "REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows "
    "FOR EACH STATEMENT EXECUTE FUNCTION jobplane_tasks_notify_done()",
)


@event.listens_for(Task.__table__, "after_create")
def _create_task_done_notify(_table: Any, connection: Connection, **_: Any) -> None:
    # As for the outbox's trigger: a new database's; an existing one's comes from 0009.
    if connection.dialect.name == "postgresql":
        for statement in TASK_DONE_NOTIFY_DDL:
            connection.exec_driver_sql(statement)


class TaskCount(Base):
    """A change to the number of tasks of one (type, queue, schedule, status), and to their
    retries: what the admin reads add up instead of counting the tasks table.

    Triggers on ``jobplane_tasks`` append one row per (type, queue, schedule, status) a
    statement changed (``TASK_COUNT_DDL``), in that statement's transaction: the sums are
    exact at every snapshot, whichever code path (or the user's own SQL) wrote the tasks.
    Appending, never updating, so that concurrent writers never wait on a counter row;
    the maintenance leader folds the rows into one per key every few seconds
    (``jobplane.store.counts.fold``), which bounds what a read adds up by the number of
    keys and the changes since the last fold, not by the number of tasks.
    """

    __tablename__ = "jobplane_task_counts"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    type: Mapped[str] = mapped_column(String(200))
    queue: Mapped[str] = mapped_column(String(100))
    #: The schedule the tasks are runs of, or "" for none.
    schedule: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(16))
    tasks: Mapped[int] = mapped_column(BigInteger)
    #: The change to the sum of their ``retry_count``.
    retries: Mapped[int] = mapped_column(BigInteger)


_COUNT_KEY = "type, queue, schedule, status, tasks, retries"
#: PostgreSQL: statement-level triggers, so a batch of a thousand completions appends two
#: rows, not two thousand; a row counts for an UPDATE only if its status (or retries)
#: changed, so heartbeats and progress append nothing. TRUNCATE empties the counts too.
#: A transition table is allowed on a one-event trigger only: hence one trigger per event,
#: sharing the function. Names unqualified, as for ``OUTBOX_NOTIFY_DDL``; the function
#: keeps the search path it was created with (``jobplane migrate``'s, the schema's), so
#: that it finds its table from a connection that names jobplane's tables by schema.
TASK_COUNT_PG_DDL = (
    f"""CREATE FUNCTION jobplane_tasks_count() RETURNS trigger LANGUAGE plpgsql
SET search_path FROM CURRENT AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO jobplane_task_counts ({_COUNT_KEY})
        SELECT n.type, n.queue, coalesce(n.schedule_name, ''), n.status,
               count(*), sum(n.retry_count)
        FROM new_rows n GROUP BY 1, 2, 3, 4;
    ELSIF TG_OP = 'DELETE' THEN
        INSERT INTO jobplane_task_counts ({_COUNT_KEY})
        SELECT o.type, o.queue, coalesce(o.schedule_name, ''), o.status,
               -count(*), -sum(o.retry_count)
        FROM old_rows o GROUP BY 1, 2, 3, 4;
    ELSIF TG_OP = 'UPDATE' THEN
        INSERT INTO jobplane_task_counts ({_COUNT_KEY})
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
$$""",
    "CREATE TRIGGER jobplane_tasks_count_on_insert AFTER INSERT ON jobplane_tasks "
    "REFERENCING NEW TABLE AS new_rows "
    "FOR EACH STATEMENT EXECUTE FUNCTION jobplane_tasks_count()",
    "CREATE TRIGGER jobplane_tasks_count_on_update AFTER UPDATE ON jobplane_tasks "
    "REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows "
    "FOR EACH STATEMENT EXECUTE FUNCTION jobplane_tasks_count()",
    "CREATE TRIGGER jobplane_tasks_count_on_delete AFTER DELETE ON jobplane_tasks "
    "REFERENCING OLD TABLE AS old_rows "
    "FOR EACH STATEMENT EXECUTE FUNCTION jobplane_tasks_count()",
    "CREATE TRIGGER jobplane_tasks_count_on_truncate AFTER TRUNCATE ON jobplane_tasks "
    "FOR EACH STATEMENT EXECUTE FUNCTION jobplane_tasks_count()",
)
_NEW = "NEW.type, NEW.queue, coalesce(NEW.schedule_name, ''), NEW.status"
_OLD = "OLD.type, OLD.queue, coalesce(OLD.schedule_name, ''), OLD.status"
#: SQLite has row-level triggers only; it has one writer at a time, so appending a row
#: per change costs no waiting, and the fold keeps the table small all the same.
TASK_COUNT_SQLITE_DDL = (
    "CREATE TRIGGER jobplane_tasks_count_on_insert AFTER INSERT ON jobplane_tasks BEGIN "
    f"INSERT INTO jobplane_task_counts ({_COUNT_KEY}) VALUES ({_NEW}, 1, NEW.retry_count); "
    "END",
    "CREATE TRIGGER jobplane_tasks_count_on_update "
    "AFTER UPDATE OF status, retry_count, type, queue, schedule_name ON jobplane_tasks "
    "WHEN OLD.status IS NOT NEW.status OR OLD.retry_count IS NOT NEW.retry_count "
    "OR OLD.type IS NOT NEW.type OR OLD.queue IS NOT NEW.queue "
    "OR OLD.schedule_name IS NOT NEW.schedule_name BEGIN "
    f"INSERT INTO jobplane_task_counts ({_COUNT_KEY}) "
    f"VALUES ({_OLD}, -1, -OLD.retry_count), ({_NEW}, 1, NEW.retry_count); "
    "END",
    "CREATE TRIGGER jobplane_tasks_count_on_delete AFTER DELETE ON jobplane_tasks BEGIN "
    f"INSERT INTO jobplane_task_counts ({_COUNT_KEY}) VALUES ({_OLD}, -1, -OLD.retry_count); "
    "END",
)


def task_count_ddl(dialect_name: str) -> tuple[str, ...]:
    """The statements that create the counting triggers on ``dialect_name``."""
    return TASK_COUNT_PG_DDL if dialect_name == "postgresql" else TASK_COUNT_SQLITE_DDL


@event.listens_for(Base.metadata, "after_create")
def _create_task_count_triggers(_metadata: Any, connection: Connection, **_: Any) -> None:
    # A new database's, once both tables exist; an existing one's come from revision 0010.
    for statement in task_count_ddl(connection.dialect.name):
        connection.exec_driver_sql(statement)


class Worker(Base):
    """A worker process (host:pid) and when it last reported: the "workers seen" of the
    admin stats, read without looking at tasks. Each worker's monitor thread writes its
    row at every heartbeat; retention forgets the rows of workers long gone."""

    __tablename__ = "jobplane_workers"

    name: Mapped[str] = mapped_column(String(200), primary_key=True)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Workflow(Base):
    """Steps run in an order: a chain, a group, a group with a step after it, nested.

    Each step is a task (``Task.workflow_id``); the order between them is kept as edges
    (``WorkflowEdge``), and the count of steps a step still waits on on its row
    (``Task.waiting_on``). The workflow's own status changes in the transactions of the
    steps that decide it: the last step to complete, the first to fail.
    """

    __tablename__ = "jobplane_workflows"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    #: running, completed, failed or cancelled (``jobplane.workflows.WorkflowStatus``).
    status: Mapped[str] = mapped_column(String(16))
    #: The workflow as submitted, each step replaced by its task's id:
    #: ``{"chain": [...]}``, ``{"group": [...], "then": ...}`` or a task id.
    shape: Mapped[Any] = mapped_column(JSONDocument)
    #: How many steps (tasks) it has.
    steps: Mapped[int] = mapped_column(Integer)
    #: Its last steps (those no step waits on) not completed yet: the completion that
    #: brings it to zero completes the workflow.
    ends_left: Mapped[int] = mapped_column(Integer)
    #: Why it failed or was cancelled: the first step that did, and its error.
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    #: The Idempotency-Key it was submitted with: one workflow per key.
    idempotency_key: Mapped[str | None] = mapped_column(String(200), nullable=True)
    #: sha256 of the workflow an Idempotency-Key was first used with
    #: (``jobplane.library.workflows.fingerprint``).
    request_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)

    __table_args__ = (
        Index("jobplane_workflows_created_at_idx", "created_at"),
        Index("jobplane_workflows_status_created_at_idx", "status", "created_at"),
        # A unique index, not a constraint: SQLite adds no constraint to a table it has.
        Index("jobplane_workflows_idempotency_key_key", "idempotency_key", unique=True),
    )


class WorkflowEdge(Base):
    """One step of a workflow waits for another one to complete."""

    __tablename__ = "jobplane_workflow_edges"

    #: The step that must complete first.
    before_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    #: The step that waits for it.
    after_id: Mapped[str] = mapped_column(String(36), primary_key=True)

    # What a step waits on (a retry counts them again).
    __table_args__ = (Index("jobplane_workflow_edges_after_id_idx", "after_id"),)


class TaskLog(Base):
    """One line of a task's log."""

    __tablename__ = "jobplane_task_logs"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    task_id: Mapped[str] = mapped_column(String(36))
    level: Mapped[str] = mapped_column(String(10))
    message: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)

    __table_args__ = (Index("jobplane_task_logs_task_id_id_idx", "task_id", "id"),)


class ScheduleState(Base):
    """What the platform remembers of a schedule: catch-up never reaches before first_seen_at."""

    __tablename__ = "jobplane_schedules"

    name: Mapped[str] = mapped_column(String(200), primary_key=True)
    first_seen_at: Mapped[datetime] = mapped_column(UTCDateTime)


class ScheduleRun(Base):
    """The runs ledger: one row per (schedule, fire time) that catch-up decided on.

    The authority on "this run is already recorded", kept apart from ``tasks`` so that
    retention can delete old tasks without forgetting which runs happened. Retention
    trims it only outside every schedule's catch-up window (``jobplane.maintenance.catchup``).
    """

    __tablename__ = "jobplane_schedule_runs"

    schedule_name: Mapped[str] = mapped_column(String(200), primary_key=True)
    #: The run's fire time, a UTC instant.
    fire_time: Mapped[datetime] = mapped_column(UTCDateTime, primary_key=True)
    #: The task recorded for the run (enqueued or skipped); no foreign key, because
    #: retention deletes the task long before the ledger forgets the run.
    task_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime)

    # Retention trims by fire time across every schedule.
    __table_args__ = (Index("jobplane_schedule_runs_fire_time_idx", "fire_time"),)


class MetricCounter(Base):
    """A counter that relays and the maintenance leader add to; the API's /metrics serves it.

    Pushed through the database so that one scrape of the API sees every process.
    """

    __tablename__ = "jobplane_metric_counters"

    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    #: One label value (e.g. the kind of recovery), or "" for none.
    label: Mapped[str] = mapped_column(String(200), primary_key=True)
    value: Mapped[int] = mapped_column(BigInteger)


class KeyValue(Base):
    """Small platform state shared by processes (e.g. the broker epoch last seen)."""

    __tablename__ = "jobplane_platform_state"

    key: Mapped[str] = mapped_column(String(100), primary_key=True)
    value: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


def utcnow() -> datetime:
    """Now, timezone-aware in UTC."""
    return datetime.now(UTC)
