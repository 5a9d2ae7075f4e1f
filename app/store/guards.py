"""Status guards, built from the transition table: no statement names a source state itself.

Every statement that writes a status takes its status condition from here, and sets
``updated_at`` with it (the live dashboard reads changes from that column's index):
``may_become(target)`` is ``status IN ALLOWED_FROM[target]``; a statement that moves
a task from fewer states (a retry is only ever of a running task) names them with
``only=``, and a state the table does not allow there is refused as the statement is
built (at import, for the statements built once). Inserts take the state a task is
created in from ``INITIAL_STATES`` the same way.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime

from sqlalchemy import ColumnElement, Connection, update

from jobplane.domain import ALLOWED_FROM, INITIAL_STATES, TaskStatus
from jobplane.models import Task
from jobplane.store.rows import TaskRow

PENDING = TaskStatus.PENDING.value


RUNNING = TaskStatus.RUNNING.value


FINISHED = [status.value for status in TaskStatus if status.is_terminal]


def entered_from(target: TaskStatus, only: Iterable[TaskStatus] | None = None) -> list[str]:
    """The states a statement may move a task to ``target`` from, as stored, in the
    enum's order (a fixed statement text): ``ALLOWED_FROM[target]``, or ``only`` of them."""
    allowed = ALLOWED_FROM[target]
    sources = allowed if only is None else frozenset(only)
    if not sources or not sources <= allowed:
        outside = ", ".join(sorted(sources - allowed)) or "no state"
        raise ValueError(f"a task may not become {target} from {outside}")
    return [status.value for status in TaskStatus if status in sources]


def may_become(target: TaskStatus, only: Iterable[TaskStatus] | None = None) -> ColumnElement[bool]:
    """``status IN (…)`` for a statement moving tasks to ``target`` (see ``entered_from``);
    ``status = …`` when that is one state, which a precompiled statement can hold."""
    sources = entered_from(target, only)
    if len(sources) == 1:
        return Task.status == sources[0]
    return Task.status.in_(sources)


def may_become_in_batch(
    target: TaskStatus, only: Iterable[TaskStatus] | None = None
) -> ColumnElement[bool]:
    """``may_become`` as the batched statements write it, ``(status = …) IS TRUE``
    (see ``jobplane.store.sql.unnested`` for why)."""
    return may_become(target, only).is_(True)


def created_in(only: Iterable[TaskStatus] | None = None) -> frozenset[str]:
    """The states an insert may create a task in: ``INITIAL_STATES``, or ``only`` of them."""
    sources = INITIAL_STATES if only is None else frozenset(only)
    if not sources or not sources <= INITIAL_STATES:
        outside = ", ".join(sorted(sources - INITIAL_STATES)) or "no state"
        raise ValueError(f"a task may not be created {outside}")
    return frozenset(status.value for status in sources)


def check_created(tasks: Iterable[TaskRow], allowed: frozenset[str]) -> None:
    """Refuse to insert tasks in a state ``allowed`` (from ``created_in``) does not hold."""
    for task in tasks:
        if task.status not in allowed:
            raise ValueError(f"a task may not be created {task.status}")


def guarded_update(
    conn: Connection,
    task_id: str,
    dispatch: int,
    target: TaskStatus,
    values: Mapping[str, object],
    now: datetime,
) -> bool:
    """Move one run (task id, dispatch) to ``target`` from any state the table allows,
    with ``values``, at ``now``; False if it was in none of them (or at another dispatch)."""
    result = conn.execute(
        update(Task)
        .where(Task.id == task_id, Task.dispatch == dispatch, may_become(target))
        .values(status=target.value, updated_at=now, **values)
    )
    return result.rowcount == 1
