"""Task states as stored, and the guarded UPDATE that changes one: no row back, no transition."""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    Connection,
    update,
)

from jobplane.domain import ALLOWED_FROM, TaskStatus
from jobplane.models import (
    Task,
)

PENDING = TaskStatus.PENDING.value


RUNNING = TaskStatus.RUNNING.value


FINISHED = [status.value for status in TaskStatus if status.is_terminal]


def allowed_from(target: TaskStatus) -> list[str]:
    return [status.value for status in ALLOWED_FROM[target]]


def guarded_update(
    conn: Connection, task_id: str, dispatch: int, target: TaskStatus, values: dict[str, Any]
) -> bool:
    result = conn.execute(
        update(Task)
        .where(Task.id == task_id, Task.dispatch == dispatch, Task.status.in_(allowed_from(target)))
        .values(**values)
    )
    return result.rowcount == 1
