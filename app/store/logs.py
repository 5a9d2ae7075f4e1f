"""Task log lines: appended by job bodies, read by the API.

Callers own the transaction: each function takes ``conn`` and never commits.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import (
    Connection,
    func,
    insert,
    select,
)

from jobplane.models import (
    TaskLog,
)
from jobplane.store.rows import LogRow, NewLogLine


def append_logs(conn: Connection, lines: Sequence[NewLogLine]) -> None:
    if lines:
        conn.execute(
            insert(TaskLog),
            [
                {
                    "task_id": line.task_id,
                    "level": line.level,
                    "message": line.message,
                    "created_at": line.created_at,
                }
                for line in lines
            ],
        )


def list_logs(
    conn: Connection, task_id: str, *, level: str | None, offset: int, limit: int
) -> tuple[list[LogRow], int]:
    """One page of a task's log, oldest first, optionally of one level."""
    conditions = [TaskLog.task_id == task_id]
    if level is not None:
        conditions.append(TaskLog.level == level)
    rows = conn.execute(
        select(TaskLog.id, TaskLog.level, TaskLog.message, TaskLog.created_at)
        .where(*conditions)
        .order_by(TaskLog.id)
        .offset(offset)
        .limit(limit)
    ).all()
    total = conn.execute(select(func.count()).select_from(TaskLog).where(*conditions)).scalar_one()
    return [LogRow(*row) for row in rows], total
