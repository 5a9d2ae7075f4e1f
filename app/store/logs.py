"""Task log lines: appended by job bodies, read by the API.

Callers own the transaction: each function takes ``conn`` and never commits.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import (
    Connection,
    func,
    insert,
    select,
)

from jobplane.models import (
    TaskLog,
)


def append_logs(conn: Connection, lines: Sequence[dict[str, Any]]) -> None:
    if lines:
        conn.execute(insert(TaskLog), list(lines))


def list_logs(
    conn: Connection, task_id: str, *, level: str | None, offset: int, limit: int
) -> tuple[list[Any], int]:
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
    return list(rows), total
