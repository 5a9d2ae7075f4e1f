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

    __table_args__ = (
        UniqueConstraint("schedule_name", "fire_time"),
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

    __table_args__ = (Index("jobplane_outbox_available_at_id_idx", "available_at", "id"),)


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
#: changed to a terminal one. PostgreSQL allows a transition table on a trigger of one
#: event only: hence two triggers sharing the function. Delivered at commit; names
#: unqualified, as for ``OUTBOX_NOTIFY_DDL``.
TASK_DONE_NOTIFY_DDL = (
    f"""CREATE FUNCTION jobplane_tasks_notify_done() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    done text[];
BEGIN
    IF TG_OP = 'INSERT' THEN
        done := ARRAY(SELECT n.id FROM new_rows n WHERE n.status IN ({_TERMINAL_SQL}));
    ELSE
        done := ARRAY(
            SELECT n.id FROM new_rows n JOIN old_rows o ON o.id = n.id
            WHERE n.status IN ({_TERMINAL_SQL}) AND o.status IS DISTINCT FROM n.status
        );
    END IF;
    FOR i IN 1 .. coalesce(array_length(done, 1), 0) BY {TASK_DONE_IDS_PER_PAYLOAD} LOOP
        PERFORM pg_notify(
            '{TASK_DONE_CHANNEL}',
            array_to_string(done[i:i + {TASK_DONE_IDS_PER_PAYLOAD - 1}], ',')
        );
    END LOOP;
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
