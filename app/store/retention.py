"""Retention: deleting finished tasks with their logs and outbox rows.

Callers own the transaction: each function takes ``conn`` and never commits.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    ColumnElement,
    Connection,
    Select,
    and_,
    delete,
    func,
    select,
)

from jobplane.models import (
    Outbox,
    Task,
    TaskLog,
)
from jobplane.store.guards import FINISHED


def delete_finished_before(conn: Connection, cutoff: datetime, limit: int) -> int:
    """Delete up to ``limit`` finished tasks that ended before ``cutoff``, with their
    logs and outbox rows; returns how many tasks went. Live tasks are never touched.

    Whether a task is finished is decided as it is deleted, never from ids read
    earlier: a task retried in the meantime keeps its row and its new outbox row.
    Small batches, each in its own transaction, keep locks short on a busy table.
    """
    ended = func.coalesce(Task.completed_at, Task.cancelled_at, Task.created_at)
    # A task ends after it was created: the bound on created_at lets the (status,
    # created_at) index find the candidates, so a clean-up with nothing to delete
    # reads no more than that.
    # A workflow's steps go with their workflow (``store.workflows.delete_finished_before``).
    finished = and_(
        Task.status.in_(FINISHED),
        Task.created_at < cutoff,
        ended < cutoff,
        Task.workflow_id.is_(None),
    )
    batch = select(Task.id).where(finished).limit(limit)
    if conn.dialect.name == "postgresql":
        return _delete_finished_postgres(conn, finished, batch)
    return _delete_finished_in_turn(conn, finished, batch)


def _delete_finished_postgres(
    conn: Connection, finished: ColumnElement[bool], batch: Select[str]
) -> int:
    # One statement: the tasks go, and their logs and outbox rows with them. A task
    # being retried right now is locked: skipped, not waited for. One that changed
    # since the statement began is checked again against ``finished`` as it is
    # deleted (hence the predicate on the DELETE itself, not only in its batch).
    gone = (
        delete(Task)
        .where(Task.id.in_(batch.with_for_update(skip_locked=True)), finished)
        .returning(Task.id)
        .cte("gone")
    )
    logs = delete(TaskLog).where(TaskLog.task_id == gone.c.id).cte("gone_logs")
    outbox = delete(Outbox).where(Outbox.task_id == gone.c.id).cte("gone_outbox")
    counted = select(func.count()).select_from(gone).add_cte(logs, outbox)
    return int(conn.execute(counted).scalar_one())


def _delete_finished_in_turn(
    conn: Connection, finished: ColumnElement[bool], batch: Select[str]
) -> int:
    # SQLite has no data-modifying CTE, but the engine begins every transaction with
    # BEGIN IMMEDIATE: from here to the commit no other connection writes, so the
    # batch is the same set of tasks in each of the three statements.
    batch = batch.order_by(Task.id)
    conn.execute(delete(TaskLog).where(TaskLog.task_id.in_(batch)))
    conn.execute(delete(Outbox).where(Outbox.task_id.in_(batch)))
    return conn.execute(delete(Task).where(Task.id.in_(batch), finished)).rowcount
