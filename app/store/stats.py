"""The admin surface: the outbox backlog, live changes, recent durations, and the metric
counters pushed through the database (the task counts are ``counts``', the workers
``workers``').

Callers own the transaction: each function takes ``conn`` and never commits.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from functools import lru_cache
from typing import Any

from sqlalchemy import Connection, func, select
from sqlalchemy.dialects import postgresql, sqlite

from jobplane.domain import TaskStatus
from jobplane.models import (
    MetricCounter,
    Outbox,
    Task,
)
from jobplane.store.guards import RUNNING
from jobplane.store.rows import TASK_COLUMNS, CounterRow, DurationRow, TaskRow


def outbox_backlog(conn: Connection) -> tuple[int, datetime | None]:
    """How many outbox rows wait, and when the oldest was written."""
    count, oldest = conn.execute(select(func.count(), func.min(Outbox.created_at))).one()
    return count, oldest


def changed_tasks(conn: Connection, *, since: datetime, limit: int) -> list[TaskRow]:
    """What the live dashboard may not have seen: the running tasks (their progress moves)
    and the tasks whose status changed since ``since``, newest first, at most ``limit``.

    Two reads of an index each (the running tasks', and ``updated_at``'s), of at most
    ``limit`` rows: what they cost does not grow with the table. The caller compares the
    tasks with what it sent before.
    """
    running = conn.execute(
        select(*TASK_COLUMNS)
        .where(Task.status == RUNNING)
        .order_by(Task.created_at.desc())
        .limit(limit)
    ).all()
    changed = conn.execute(
        select(*TASK_COLUMNS)
        .where(Task.updated_at >= since)
        .order_by(Task.updated_at.desc())
        .limit(limit)
    ).all()
    tasks = {row.id: TaskRow.from_row(row) for row in (*running, *changed)}
    newest_first = sorted(tasks.values(), key=lambda task: (task.created_at, task.id), reverse=True)
    return newest_first[:limit]


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
    conn: Connection, since: datetime, bounds: Sequence[float], *, sample: int
) -> list[DurationRow]:
    """Per job type, of the ``sample`` tasks that completed last since ``since``: how many
    took at most each bound (seconds), how many in all, and their total duration.

    A sample of the newest, read through ``updated_at``'s index: a busy hour must not
    make a scrape read every task it completed.
    """
    seconds = _seconds_between(conn, Task.started_at, Task.completed_at).label("seconds")
    recent = (
        select(Task.type, seconds)
        .where(
            Task.updated_at >= since,
            Task.status == TaskStatus.COMPLETED.value,
            Task.started_at.is_not(None),
        )
        .order_by(Task.updated_at.desc())
        .limit(sample)
        .subquery()
    )
    columns = [func.count().filter(recent.c.seconds <= bound) for bound in bounds]
    rows = conn.execute(
        select(
            recent.c.type, *columns, func.count(), func.coalesce(func.sum(recent.c.seconds), 0.0)
        ).group_by(recent.c.type)
    )
    return [
        DurationRow(job_type, tuple(within), count, float(total))
        for job_type, *within, count, total in rows
    ]


def _seconds_between(conn: Connection, start: Any, end: Any) -> Any:
    if conn.dialect.name == "postgresql":
        return func.extract("epoch", end - start)
    return (func.julianday(end) - func.julianday(start)) * 86400.0
