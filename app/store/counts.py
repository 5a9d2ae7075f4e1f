"""How many tasks there are, by type, queue, schedule and status, without counting them.

Triggers append a row to ``jobplane_task_counts`` for each change a statement made to
the tasks (``jobplane.models.TaskCount``); a read adds the rows up, and ``fold``
replaces them by their sums, so that a read costs what the number of keys and the
changes since the last fold cost, however many tasks there are.

Callers own the transaction: each function takes ``conn`` and never commits.
"""

from __future__ import annotations

from collections import defaultdict

from sqlalchemy import Connection, delete, func, insert, or_, select

from jobplane.models import TaskCount
from jobplane.store.rows import TaskCountRow

_KEY = (TaskCount.type, TaskCount.queue, TaskCount.schedule, TaskCount.status)


def task_counts(conn: Connection) -> list[TaskCountRow]:
    """Every (type, queue, schedule, status) with tasks or retries, and their sums."""
    tasks, retries = func.sum(TaskCount.tasks), func.sum(TaskCount.retries)
    rows = conn.execute(
        select(*_KEY, tasks, retries).group_by(*_KEY).having(or_(tasks != 0, retries != 0))
    )
    return [TaskCountRow(*row) for row in rows]


def count_tasks(
    conn: Connection, *, status: str | None, type: str | None, queue: str | None
) -> int:
    """How many tasks have this status, type and queue (None: any)."""
    conditions = [
        column == value
        for column, value in (
            (TaskCount.status, status),
            (TaskCount.type, type),
            (TaskCount.queue, queue),
        )
        if value is not None
    ]
    total = conn.execute(select(func.sum(TaskCount.tasks)).where(*conditions)).scalar_one()
    return int(total or 0)


def fold(conn: Connection) -> tuple[int, int]:
    """Replace the rows by one per key holding their sums; returns (rows before, after).

    The rows are deleted and their sums inserted in one transaction, so every snapshot
    adds up to the same numbers before and after. Only the rows this statement deleted
    are summed: a change committed meanwhile is neither lost nor counted twice, and two
    folds at once (a leader handing over) each fold rows the other did not.
    """
    deleted = conn.execute(delete(TaskCount).returning(*_KEY, TaskCount.tasks, TaskCount.retries))
    sums: defaultdict[tuple[str, str, str, str], list[int]] = defaultdict(lambda: [0, 0])
    before = 0
    for job_type, queue, schedule, status, tasks, retries in deleted:
        before += 1
        total = sums[(job_type, queue, schedule, status)]
        total[0] += tasks
        total[1] += retries
    kept = [
        {
            "type": key[0],
            "queue": key[1],
            "schedule": key[2],
            "status": key[3],
            "tasks": tasks,
            "retries": retries,
        }
        for key, (tasks, retries) in sorted(sums.items())
        if tasks or retries
    ]
    if kept:
        conn.execute(insert(TaskCount), kept)
    return before, len(kept)
