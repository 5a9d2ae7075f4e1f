"""The admin surface: counts, live changes, workers seen, and the metric counters pushed
through the database.

Callers own the transaction: each function takes ``conn`` and never commits.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from functools import lru_cache
from typing import Any

from sqlalchemy import (
    Connection,
    func,
    or_,
    select,
)
from sqlalchemy.dialects import postgresql, sqlite

from jobplane.domain import TaskStatus
from jobplane.models import (
    MetricCounter,
    Outbox,
    Task,
)
from jobplane.store.guards import PENDING, RUNNING
from jobplane.store.rows import (
    TASK_COLUMNS,
    CounterRow,
    DurationRow,
    ScheduleStatusCount,
    StatusTypeCount,
    TaskRow,
    TypeRetries,
    WorkerRow,
)


def outbox_backlog(conn: Connection) -> tuple[int, datetime | None]:
    """How many outbox rows wait, and when the oldest was written."""
    count, oldest = conn.execute(select(func.count(), func.min(Outbox.created_at))).one()
    return count, oldest


def workers_seen(conn: Connection, since: datetime) -> list[WorkerRow]:
    """Workers that heartbeat a task since ``since``: name, last heartbeat, tasks running."""
    running = func.count().filter(Task.status == RUNNING).label("running")
    rows = conn.execute(
        select(Task.worker, func.max(Task.heartbeat_at).label("last_heartbeat_at"), running)
        .where(Task.worker.is_not(None), Task.heartbeat_at >= since)
        .group_by(Task.worker)
        .order_by(Task.worker)
    )
    # (never None, as the WHERE says: the checks are the type checker's)
    return [
        WorkerRow(worker, last, running)
        for worker, last, running in rows
        if worker is not None and last is not None
    ]


def count_by_status_and_type(conn: Connection) -> list[StatusTypeCount]:
    """How many tasks there are of each status and type."""
    rows = conn.execute(
        select(Task.status, Task.type, func.count()).group_by(Task.status, Task.type)
    )
    return [StatusTypeCount(*row) for row in rows]


def changed_tasks(
    conn: Connection, *, since: datetime, now: datetime, watch: Iterable[str], limit: int
) -> list[TaskRow]:
    """Tasks that may have changed since ``since``, for the live dashboard.

    There is no ``updated_at`` column: these are the running tasks, the ones created,
    started, finished or cancelled since then, the pending ones that became due (an
    admin's retry), and the ``watch`` ids (those running at the previous look, to see
    them go back to pending). The caller compares them with what it sent before.
    """
    conditions = [
        Task.status == RUNNING,
        Task.created_at >= since,
        Task.started_at >= since,
        Task.completed_at >= since,
        Task.cancelled_at >= since,
        (Task.status == PENDING) & (Task.run_after >= since) & (Task.run_after <= now),
    ]
    ids = list(watch)
    if ids:
        conditions.append(Task.id.in_(ids))
    rows = conn.execute(
        select(*TASK_COLUMNS).where(or_(*conditions)).order_by(Task.created_at.desc()).limit(limit)
    )
    return [TaskRow.from_row(row) for row in rows]


def add_to_counters(conn: Connection, increments: dict[tuple[str, str], int]) -> None:
    """Add to (name, label) counters, creating them at their first increment."""
    rows = [
        {"name": name, "label": label, "value": value}
        for (name, label), value in sorted(increments.items())
        if value
    ]
    if not rows:
        return
    conn.execute(_add_to_counters(conn.dialect.name), rows)


@lru_cache(maxsize=2)
def _add_to_counters(dialect_name: str) -> postgresql.Insert | sqlite.Insert:
    """The upsert, built once per dialect: relays run it with every batch."""
    insert = postgresql.insert if dialect_name == "postgresql" else sqlite.insert
    statement = insert(MetricCounter)
    return statement.on_conflict_do_update(
        index_elements=["name", "label"],
        set_={"value": MetricCounter.value + statement.excluded.value},
    )


def read_counters(conn: Connection) -> list[CounterRow]:
    """Every pushed counter."""
    rows = conn.execute(select(MetricCounter.name, MetricCounter.label, MetricCounter.value))
    return [CounterRow(*row) for row in rows]


def recent_durations(
    conn: Connection, since: datetime, bounds: Sequence[float]
) -> list[DurationRow]:
    """Per job type, of the tasks created since ``since`` that completed: how many took at
    most each bound (seconds), how many in all, and their total duration."""
    seconds = _seconds_between(conn, Task.started_at, Task.completed_at)
    columns = [func.count().filter(seconds <= bound) for bound in bounds]
    rows = conn.execute(
        select(Task.type, *columns, func.count(), func.coalesce(func.sum(seconds), 0.0))
        .where(
            Task.status == TaskStatus.COMPLETED.value,
            Task.created_at >= since,
            Task.started_at.is_not(None),
        )
        .group_by(Task.type)
    )
    return [
        DurationRow(job_type, tuple(within), count, float(total))
        for job_type, *within, count, total in rows
    ]


def _seconds_between(conn: Connection, start: Any, end: Any) -> Any:
    if conn.dialect.name == "postgresql":
        return func.extract("epoch", end - start)
    return (func.julianday(end) - func.julianday(start)) * 86400.0


def retries_by_type(conn: Connection) -> list[TypeRetries]:
    """The retries of the tasks still kept, by job type."""
    rows = conn.execute(select(Task.type, func.sum(Task.retry_count)).group_by(Task.type))
    return [TypeRetries(job_type, retries or 0) for job_type, retries in rows]


def schedule_runs_by_status(conn: Connection) -> list[ScheduleStatusCount]:
    """How many scheduled runs of each schedule are in each status (over those kept)."""
    rows = conn.execute(
        select(Task.schedule_name, Task.status, func.count())
        .where(Task.schedule_name.is_not(None))
        .group_by(Task.schedule_name, Task.status)
    )
    return [
        ScheduleStatusCount(schedule, status, count)
        for schedule, status, count in rows
        if schedule is not None  # as the WHERE says: the check is the type checker's
    ]
