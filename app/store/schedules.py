"""Schedules and the runs ledger: when a schedule was first seen, which runs are recorded, and
recording a run with its task exactly once.

Callers own the transaction: each function takes ``conn`` and never commits.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    Connection,
    delete,
    func,
    select,
)

from jobplane.domain import TaskStatus
from jobplane.models import (
    KeyValue,
    ScheduleRun,
    ScheduleState,
    Task,
)
from jobplane.store.outbox import OUTBOX_SOURCE, insert_outbox_rows
from jobplane.store.sql import insert_ignoring_conflict
from jobplane.store.state import RUNS_KEPT_SINCE_KEY, put_state, read_state


def schedule_first_seen(conn: Connection, name: str, now: datetime, *, record: bool) -> datetime:
    """When the platform first saw schedule ``name``; ``now`` (recorded if asked) if never."""
    seen = conn.execute(
        select(ScheduleState.first_seen_at).where(ScheduleState.name == name)
    ).scalar_one_or_none()
    if seen is not None:
        return seen
    if record:
        conn.execute(
            insert_ignoring_conflict(conn, ScheduleState, ["name"]).values(
                name=name, first_seen_at=now
            )
        )
        return schedule_first_seen(conn, name, now, record=False)
    return now


def recorded_runs(
    conn: Connection, name: str, start: datetime, end: datetime
) -> dict[datetime, tuple[str | None, str | None]]:
    """Runs of schedule ``name`` in the ledger with a fire time in [start, end].

    Fire time → (task id, the task's status, or None once retention deleted the task).
    """
    rows = conn.execute(
        select(
            ScheduleRun.fire_time,
            func.coalesce(Task.id, ScheduleRun.task_id).label("task_id"),
            Task.status,
        )
        .select_from(ScheduleRun)
        .outerjoin(
            Task,
            (Task.schedule_name == ScheduleRun.schedule_name)
            & (Task.fire_time == ScheduleRun.fire_time),
        )
        .where(
            ScheduleRun.schedule_name == name,
            ScheduleRun.fire_time >= start,
            ScheduleRun.fire_time <= end,
        )
    ).all()
    return {row.fire_time: (row.task_id, row.status) for row in rows}


def insert_scheduled_run(conn: Connection, task: dict[str, Any], *, with_outbox: bool) -> bool:
    """Record a run in the ledger, with its task (and outbox row if asked), unless the
    ledger already has its (schedule, fire time); True if this call recorded it.

    The ledger's insert decides: a second scheduler's waits for the first's commit
    (PostgreSQL) or its turn to write (SQLite), then finds the run and writes nothing.
    """
    recorded = conn.execute(
        insert_ignoring_conflict(conn, ScheduleRun, ["schedule_name", "fire_time"])
        .values(
            schedule_name=task["schedule_name"],
            fire_time=task["fire_time"],
            task_id=task["id"],
            recorded_at=task["created_at"],
        )
        .returning(ScheduleRun.fire_time)
    ).first()
    if recorded is None:
        return False
    inserted = conn.execute(
        insert_ignoring_conflict(conn, Task, ["schedule_name", "fire_time"])
        .values(**task)
        .returning(*OUTBOX_SOURCE)
    ).first()
    if inserted is None:
        # A task of this run outlived its ledger row: catch-up never reaches that far
        # back (see catchup.ledger_cutoff), but if it did, the run still exists once.
        return False
    if with_outbox:
        insert_outbox_rows(conn, [inserted], task["created_at"])
    return True


def schedule_runs_summary(conn: Connection, name: str) -> tuple[Any, int]:
    """The latest run of a schedule (by fire time, then creation) and its skipped count."""
    last = conn.execute(
        select(Task.id, Task.fire_time, Task.status, Task.created_at)
        .where(Task.schedule_name == name)
        .order_by(Task.created_at.desc())
        .limit(1)
    ).first()
    skipped = conn.execute(
        select(func.count())
        .select_from(Task)
        .where(Task.schedule_name == name, Task.status == TaskStatus.SKIPPED.value)
    ).scalar_one()
    return last, skipped


def runs_kept_since(conn: Connection) -> datetime | None:
    """The instant before which the runs ledger has forgotten runs; None if never trimmed."""
    value = read_state(conn, RUNS_KEPT_SINCE_KEY)
    return None if value is None else datetime.fromisoformat(value)


def forget_runs_before(conn: Connection, cutoff: datetime, now: datetime) -> int:
    """Delete the ledger's runs that fired before ``cutoff``, and move the ledger's
    horizon (``runs_kept_since``; only ever forward) to it; returns how many went.
    """
    conn.execute(
        insert_ignoring_conflict(conn, KeyValue, ["key"]).values(
            key=RUNS_KEPT_SINCE_KEY, value=cutoff.isoformat(), updated_at=now
        )
    )
    # Locked until commit: of two clean-ups at once, the later sees the earlier's horizon.
    held = conn.execute(
        select(KeyValue.value).where(KeyValue.key == RUNS_KEPT_SINCE_KEY).with_for_update()
    ).scalar_one()
    horizon = max(cutoff, datetime.fromisoformat(held))
    put_state(conn, RUNS_KEPT_SINCE_KEY, horizon.isoformat(), now)
    return conn.execute(delete(ScheduleRun).where(ScheduleRun.fire_time < horizon)).rowcount
