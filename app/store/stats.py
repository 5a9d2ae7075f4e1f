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
    Row,
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


def outbox_backlog(conn: Connection) -> tuple[int, datetime | None]:
    """How many outbox rows wait, and when the oldest was written."""
    count, oldest = conn.execute(select(func.count(), func.min(Outbox.created_at))).one()
    return count, oldest


def workers_seen(conn: Connection, since: datetime) -> list[Row[Any]]:
    """Workers that heartbeat a task since ``since``: name, last heartbeat, tasks running."""
    running = func.count().filter(Task.status == RUNNING).label("running")
    rows: Sequence[Any] = conn.execute(
        select(Task.worker, func.max(Task.heartbeat_at).label("last_heartbeat_at"), running)
        .where(Task.worker.is_not(None), Task.heartbeat_at >= since)
        .group_by(Task.worker)
        .order_by(Task.worker)
    ).all()
    return list(rows)


def count_by_status_and_type(conn: Connection) -> list[Row[Any]]:
    """Rows of (status, type, count) over every task."""
    return list(
        conn.execute(select(Task.status, Task.type, func.count()).group_by(Task.status, Task.type))
    )


def changed_tasks(
    conn: Connection, *, since: datetime, now: datetime, watch: Iterable[str], limit: int
) -> list[Row[Any]]:
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
    return list(
        conn.execute(
            select(Task).where(or_(*conditions)).order_by(Task.created_at.desc()).limit(limit)
        ).all()
    )


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
def _add_to_counters(dialect_name: str) -> Any:
    """The upsert, built once per dialect: relays run it with every batch."""
    dialect = postgresql if dialect_name == "postgresql" else sqlite
    statement = dialect.insert(MetricCounter)
    return statement.on_conflict_do_update(
        index_elements=["name", "label"],
        set_={"value": MetricCounter.value + statement.excluded.value},
    )


def read_counters(conn: Connection) -> list[Row[Any]]:
    """Every pushed counter: rows of (name, label, value)."""
    return list(conn.execute(select(MetricCounter.name, MetricCounter.label, MetricCounter.value)))


def recent_durations(conn: Connection, since: datetime, bounds: Sequence[float]) -> list[Any]:
    """Per job type, of the tasks created since ``since`` that completed: how many took at
    most each bound (seconds), how many in all, and their total duration."""
    seconds = _seconds_between(conn, Task.started_at, Task.completed_at)
    columns = [func.count().filter(seconds <= bound) for bound in bounds]
    return list(
        conn.execute(
            select(Task.type, *columns, func.count(), func.coalesce(func.sum(seconds), 0.0))
            .where(
                Task.status == TaskStatus.COMPLETED.value,
                Task.created_at >= since,
                Task.started_at.is_not(None),
            )
            .group_by(Task.type)
        ).all()
    )


def _seconds_between(conn: Connection, start: Any, end: Any) -> Any:
    if conn.dialect.name == "postgresql":
        return func.extract("epoch", end - start)
    return (func.julianday(end) - func.julianday(start)) * 86400.0


def retries_by_type(conn: Connection) -> list[Any]:
    """Rows of (type, retries) over the tasks still kept."""
    return list(
        conn.execute(select(Task.type, func.sum(Task.retry_count)).group_by(Task.type)).all()
    )


def schedule_runs_by_status(conn: Connection) -> list[Any]:
    """Rows of (schedule, status, runs) over the scheduled runs still kept."""
    return list(
        conn.execute(
            select(Task.schedule_name, Task.status, func.count())
            .where(Task.schedule_name.is_not(None))
            .group_by(Task.schedule_name, Task.status)
        ).all()
    )
