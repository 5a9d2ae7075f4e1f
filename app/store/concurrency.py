"""Per-job-type concurrency limits: parking a task that would exceed its limit, waking the
one of highest priority (then the longest-waiting) when a slot frees up.

Callers own the transaction: each function takes ``conn`` and never commits.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    Connection,
    func,
    select,
    update,
)

from jobplane.domain import TaskStatus
from jobplane.models import (
    Task,
)
from jobplane.store.guards import PENDING, RUNNING, may_become
from jobplane.store.requeue import requeue


def lock_job_type(conn: Connection, job_type: str) -> None:
    """Serialize claims of one job type until the transaction ends.

    PostgreSQL: a transaction-scoped advisory lock on the type's name. SQLite: every
    write transaction already holds the database's one write lock.
    """
    if conn.dialect.name == "postgresql":
        conn.execute(select(func.pg_advisory_xact_lock(func.hashtext(job_type))))


def count_running(conn: Connection, job_type: str) -> int:
    return conn.execute(
        select(func.count()).select_from(Task).where(Task.type == job_type, Task.status == RUNNING)
    ).scalar_one()


def park_task(conn: Connection, task_id: str, dispatch: int, now: datetime) -> bool:
    """Keep a pending task waiting for a slot: no message, no attempt used.

    It stays pending (pending → pending, parked) until ``wake_waiting`` publishes it again."""
    result = conn.execute(
        update(Task)
        .where(
            Task.id == task_id,
            Task.dispatch == dispatch,
            may_become(TaskStatus.PENDING, {TaskStatus.PENDING}),
        )
        .values(waiting_since=now)
    )
    return result.rowcount == 1


def wake_waiting(conn: Connection, job_type: str, count: int, now: datetime) -> list[str]:
    """Publish again ``count`` waiting tasks of ``job_type``: the highest priority first,
    then the longest-waiting."""
    if count <= 0:
        return []
    oldest = (
        select(Task.id)
        .where(Task.type == job_type, Task.waiting_since.is_not(None), Task.status == PENDING)
        .order_by(Task.priority.desc(), Task.waiting_since, Task.created_at)
        .limit(count)
        .scalar_subquery()
    )
    return requeue(
        conn,
        only={TaskStatus.PENDING},
        where=[Task.id.in_(oldest)],
        values={"waiting_since": None, "run_after": now},
        now=now,
    )


def wake_stranded(conn: Connection, now: datetime) -> list[str]:
    """Wake one waiting task of each type that has none running (its waker was lost)."""
    running_types = select(Task.type).where(Task.status == RUNNING)
    stranded = conn.execute(
        select(Task.type)
        .where(Task.waiting_since.is_not(None), Task.type.not_in(running_types))
        .distinct()
    ).scalars()
    return [
        task_id for job_type in list(stranded) for task_id in wake_waiting(conn, job_type, 1, now)
    ]
