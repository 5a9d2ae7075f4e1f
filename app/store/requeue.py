"""Publishing a task again: the one statement every way back to pending is made of.

A failed attempt's retry, a lost or stopping worker's task, an admin's retry, a task
woken from waiting for a slot, a published task whose message the broker lost: each is
one guarded UPDATE into pending that bumps the task's dispatch number, so that no older
message of it can claim it any more, and an outbox row per task it moved, carrying the
new number (as River's ``JobSetStateIfRunning`` serves every way out of running). The
statements differ only in which tasks they take and what else they set.

Callers own the transaction: ``requeue`` takes ``conn`` and never commits.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime

from sqlalchemy import ColumnElement, Connection, update

from jobplane.domain import TaskStatus
from jobplane.models import Task
from jobplane.store.guards import PENDING, may_become
from jobplane.store.outbox import write_with_outbox


def requeue(
    conn: Connection,
    *,
    only: Iterable[TaskStatus],
    where: Sequence[ColumnElement[bool]],
    values: Mapping[str, object],
    now: datetime,
) -> list[str]:
    """Move the tasks in one of the states ``only`` that match ``where`` to pending,
    with ``values`` and their dispatch number bumped, and write an outbox row for each
    (due at its ``run_after``); returns the ids of the tasks it moved, in no set order.

    ``only`` must be states the transition table lets a task re-enter pending from
    (``ALLOWED_FROM[PENDING]``): a statement naming another fails as it is built.
    """
    statement = (
        update(Task)
        .where(*where, may_become(TaskStatus.PENDING, only))
        .values(status=PENDING, updated_at=now, dispatch=Task.dispatch + 1, **values)
    )
    return write_with_outbox(conn, statement, now)
