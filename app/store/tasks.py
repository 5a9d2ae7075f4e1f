"""Submitting tasks (a task row and its outbox row in the caller's transaction), reading them, and
cancelling or restarting them by hand.

Callers own the transaction: each function takes ``conn`` and never commits.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache

from sqlalchemy import (
    ColumnElement,
    Connection,
    Text,
    bindparam,
    cast,
    column,
    func,
    insert,
    literal_column,
    select,
    update,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.dml import Insert

from jobplane.db import schema_of
from jobplane.domain import InvalidTransition, TaskNotFound, TaskStatus
from jobplane.models import (
    Outbox,
    Task,
)
from jobplane.store import counts
from jobplane.store.followups import after_finished
from jobplane.store.guards import (
    RUNNING,
    check_created,
    created_in,
    guarded_update,
    may_become,
)
from jobplane.store.outbox import OUTBOX_SOURCE
from jobplane.store.requeue import requeue
from jobplane.store.rows import TASK_COLUMNS, TASK_FIELDS, TaskRow
from jobplane.store.sql import compiled_in_schema

#: A submitted task is created pending: its outbox row is written with it.
_SUBMITTED = created_in({TaskStatus.PENDING})


def insert_tasks(conn: Connection, tasks: Sequence[TaskRow]) -> None:
    """Insert pending tasks and one outbox row each (due at the task's ``run_after``), but
    for a workflow's steps that wait on others (``waiting_on``): theirs comes later.

    Both inserts run in the caller's transaction: the relay can only see an outbox row
    whose task row is committed with it (invariant 1).
    """
    if not tasks:
        return
    if conn.dialect.name == "postgresql":
        # One statement for the whole batch, its rows passed as one JSON document, and
        # the outbox rows inserted from the task insert's RETURNING: one round trip, one
        # NOTIFY, committed as it runs when the caller is in autocommit. (A parameter
        # per column, as arrays, cost the API more CPU in the driver than the insert.)
        conn.exec_driver_sql(*_postgres_insert(conn.dialect, schema_of(conn), tasks))
        return
    check_created(tasks, _SUBMITTED)
    conn.execute(insert(Task), [task.columns() for task in tasks])
    ready = [task for task in tasks if task.waiting_on == 0]
    if ready:
        conn.execute(
            insert(Outbox),
            [
                {
                    "task_id": task.id,
                    "dispatch": task.dispatch,
                    "available_at": task.run_after,
                    "created_at": task.created_at,
                    "type": task.type,
                    "queue": task.queue,
                    "timeout_seconds": task.timeout_seconds,
                    "priority": task.priority,
                }
                for task in ready
            ],
        )


def _json_timestamp(value: object) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} in a task row is not JSON-serializable")


async def insert_tasks_async(conn: AsyncConnection, tasks: Sequence[TaskRow]) -> None:
    """``insert_tasks`` from a coroutine, on PostgreSQL: the same one statement.

    For the API's submissions, one commit per batch on the request path: sent with
    ``exec_driver_sql`` from the event loop, compiled once, it costs a fifth less
    than the same statement through ``run_sync``.
    """
    await conn.exec_driver_sql(*_postgres_insert(conn.dialect, schema_of(conn.sync_engine), tasks))


def _postgres_insert(
    dialect: Dialect, schema: str | None, tasks: Sequence[TaskRow]
) -> tuple[str, dict[str, str]]:
    """The one statement inserting ``tasks`` and their outbox rows, and its parameter."""
    check_created(tasks, _SUBMITTED)
    rows = json.dumps([task.columns() for task in tasks], default=_json_timestamp)
    return _insert_tasks_sql(TASK_FIELDS, dialect, schema), {"b_new_rows": rows}


@lru_cache(maxsize=8)
def _insert_tasks_sql(columns: tuple[str, ...], dialect: Dialect, schema: str | None) -> str:
    statement = _insert_tasks_with_outbox(columns)
    return str(compiled_in_schema(statement, dialect, schema, column_keys=["b_new_rows"]))


@lru_cache(maxsize=8)
def _insert_tasks_with_outbox(columns: tuple[str, ...]) -> Insert:
    """``WITH new_task AS (INSERT INTO jobplane_tasks SELECT … FROM json_to_recordset(:rows)
    … RETURNING …) INSERT INTO jobplane_outbox SELECT … FROM new_task``."""
    table = Task.__table__
    new = (
        func.json_to_recordset(cast(bindparam("b_new_rows", type_=Text), postgresql.JSON))
        .table_valued(*(column(name, table.c[name].type) for name in columns))
        .render_derived(name="new", with_types=True)
    )
    inserted = (
        insert(Task)
        .from_select(list(columns), select(*(new.c[name] for name in columns)))
        .returning(*OUTBOX_SOURCE, Task.created_at, Task.waiting_on)
        .cte("new_task")
    )
    # A workflow's step that waits on others gets its outbox row when they complete.
    return insert(Outbox).from_select(
        [
            "task_id",
            "dispatch",
            "available_at",
            "created_at",
            "type",
            "queue",
            "timeout_seconds",
            "priority",
        ],
        select(
            inserted.c.id,
            inserted.c.dispatch,
            inserted.c.run_after,
            inserted.c.created_at,
            inserted.c.type,
            inserted.c.queue,
            inserted.c.timeout_seconds,
            inserted.c.priority,
        ).where(inserted.c.waiting_on == literal_column("0")),
    )


def find_by_idempotency_key(conn: Connection, key: str) -> TaskRow | None:
    row = conn.execute(select(*TASK_COLUMNS).where(Task.idempotency_key == key)).first()
    return None if row is None else TaskRow.from_row(row)


def get_task(conn: Connection, task_id: str) -> TaskRow | None:
    row = conn.execute(select(*TASK_COLUMNS).where(Task.id == task_id)).first()
    return None if row is None else TaskRow.from_row(row)


def get_tasks(conn: Connection, task_ids: Sequence[str]) -> dict[str, TaskRow]:
    """The tasks of ``task_ids`` that exist, by id: one statement for many."""
    if not task_ids:
        return {}
    rows = conn.execute(select(*TASK_COLUMNS).where(Task.id.in_(task_ids))).all()
    return {row.id: TaskRow.from_row(row) for row in rows}


@dataclass(frozen=True, slots=True)
class TaskFilter:
    """The admin list's filters; None means any."""

    status: str | None = None
    type: str | None = None
    queue: str | None = None
    #: The start of a task id (any case).
    search: str | None = None


@dataclass(frozen=True, slots=True)
class TaskListing:
    """One page of the admin list, and how many tasks match in all."""

    tasks: list[TaskRow]
    total: int
    #: ``total`` is an estimate: more than ``EXACT_SEARCH_TOTAL`` tasks match a search.
    total_is_estimate: bool


#: Up to this many tasks matching an id search are counted one by one; past it, the
#: total is estimated (``_estimate_search_total``) rather than read at the table's cost.
EXACT_SEARCH_TOTAL = 10_000
#: What a task id is made of (``jobplane.service.new_task_id``: a UUID as text).
_ID_CHARACTERS = frozenset("0123456789abcdef-")


def list_tasks(conn: Connection, filters: TaskFilter, *, offset: int, limit: int) -> TaskListing:
    """One page of tasks, newest first, and the number of tasks matching ``filters``.

    Each filter has an index that gives the page in its order. The total comes from
    the task counts (``counts``), exact, unless a search is given: then up to
    ``EXACT_SEARCH_TOTAL`` matches are counted, and past that the total is estimated.
    """
    conditions = [
        column == value
        for column, value in (
            (Task.status, filters.status),
            (Task.type, filters.type),
            (Task.queue, filters.queue),
        )
        if value is not None
    ]
    prefix = filters.search.lower() if filters.search else None
    if prefix is not None:
        if not set(prefix) <= _ID_CHARACTERS:
            return TaskListing([], 0, False)  # no id holds anything else
        conditions.append(_id_starts_with(conn, prefix))
    page = conn.execute(
        select(*TASK_COLUMNS)
        .where(*conditions)
        .order_by(Task.created_at.desc(), Task.id.desc())
        .offset(offset)
        .limit(limit)
    ).all()
    tasks = [TaskRow.from_row(row) for row in page]
    matching = counts.count_tasks(
        conn, status=filters.status, type=filters.type, queue=filters.queue
    )
    if prefix is None:
        return TaskListing(tasks, matching, False)
    counted = conn.execute(
        select(func.count()).select_from(
            select(Task.id).where(*conditions).limit(EXACT_SEARCH_TOTAL + 1).subquery()
        )
    ).scalar_one()
    if counted <= EXACT_SEARCH_TOTAL:
        return TaskListing(tasks, counted, False)
    return TaskListing(tasks, _estimate_search_total(matching, prefix, counted), True)


def _id_starts_with(conn: Connection, prefix: str) -> ColumnElement[bool]:
    """``id`` starts with ``prefix`` (of id characters only), as each database's index
    serves it: PostgreSQL's pattern-ops index a LIKE, SQLite's binary primary key a range
    (every id is ASCII, so each one starting with ``prefix`` sorts below ``prefix`` and
    U+FFFF)."""
    if conn.dialect.name == "postgresql":
        return Task.id.like(prefix + "%")  # nothing to escape: hex digits and '-'
    return (Task.id >= prefix) & (Task.id < prefix + "\uffff")


def _estimate_search_total(matching: int, prefix: str, at_least: int) -> int:
    """How many of ``matching`` tasks an id prefix selects: ids are random UUIDs, so each
    hex digit of the prefix keeps a sixteenth of them (a '-' is in every id there)."""
    digits = sum(character != "-" for character in prefix)
    return max(at_least, round(matching / 16.0**digits))


def count_by_status(conn: Connection) -> dict[str, int]:
    """How many tasks are in each status (from the task counts)."""
    found: dict[str, int] = {}
    for row in counts.task_counts(conn):
        found[row.status] = found.get(row.status, 0) + row.tasks
    return found


def cancel_task(conn: Connection, task_id: str, now: datetime) -> TaskRow:
    """Cancel a pending task at once, or ask its worker to stop a running one (which
    its worker then cancels, ``mark_cancelled``, once the body stopped).

    Raises ``TaskNotFound``, or ``InvalidTransition`` for a finished task.
    """
    # Not a transition: the status stays running until the body stops.
    running_asked_to_stop = (
        update(Task).where(Task.id == task_id, Task.status == RUNNING).values(cancel_requested=True)
    )
    cancelled = cancel_pending(conn, [Task.id == task_id], now) == 1
    if cancelled:
        after_finished(conn, [task_id], now)
    if cancelled or conn.execute(running_asked_to_stop).rowcount == 1:
        row = get_task(conn, task_id)
        assert row is not None
        return row
    current = get_task(conn, task_id)
    if current is None:
        raise TaskNotFound(f"no task with id {task_id!r}")
    raise InvalidTransition(f"task {task_id} is already {current.status}", status=current.status)


def cancel_pending(
    conn: Connection, where: Sequence[ColumnElement[bool]], now: datetime, **values: object
) -> int:
    """Cancel the pending tasks matching ``where`` at once, with ``values``; how many."""
    return conn.execute(
        update(Task)
        .where(*where, may_become(TaskStatus.CANCELLED, {TaskStatus.PENDING}))
        .values(
            status=TaskStatus.CANCELLED.value,
            updated_at=now,
            cancel_requested=True,
            cancelled_at=now,
            waiting_since=None,
            **values,
        )
    ).rowcount


def mark_cancelled(conn: Connection, task_id: str, dispatch: int, now: datetime) -> bool:
    """A running task whose body stopped after a cancel request, and its follow-ups."""
    values = {"cancelled_at": now, "completed_at": None}
    if not guarded_update(conn, task_id, dispatch, TaskStatus.CANCELLED, values, now):
        return False
    after_finished(conn, [task_id], now)
    return True


def cancel_requested(conn: Connection, task_ids: Iterable[str]) -> list[str]:
    """Which of these tasks an admin asked to cancel."""
    ids = list(task_ids)
    if not ids:
        return []
    return list(
        conn.execute(
            select(Task.id).where(Task.id.in_(ids), Task.cancel_requested.is_(True))
        ).scalars()
    )


#: What an admin's retry starts a new run of: a finished task that did not complete.
_RESTARTABLE = (TaskStatus.FAILED, TaskStatus.CANCELLED, TaskStatus.SKIPPED)


def restart_task(conn: Connection, task_id: str, now: datetime) -> TaskRow:
    """A new run of a failed, cancelled or skipped task, with its retries counted afresh.

    Not of a workflow's step: its workflow's retry runs it again, and moves the
    workflow on when it ends (a step restarted alone would leave its workflow ended).
    """
    restarted = requeue(
        conn,
        only=_RESTARTABLE,
        where=[Task.id == task_id, Task.workflow_id.is_(None)],
        values={
            "retry_count": 0,
            "cancel_requested": False,
            "run_after": now,
            "completed_at": None,
            "cancelled_at": None,
            "progress": 0,
            "total": 0,
        },
        now=now,
    )
    task = get_task(conn, task_id)
    if task is None:
        raise TaskNotFound(f"no task with id {task_id!r}")
    if not restarted and task.workflow_id is not None:
        raise InvalidTransition(
            f"task {task_id} is a step of workflow {task.workflow_id}: retry the workflow "
            f"instead (POST /api/admin/workflows/{task.workflow_id}/retry, or "
            f"jobplane workflows retry {task.workflow_id})",
            status=task.status,
        )
    if not restarted:
        raise InvalidTransition(
            "only a failed, cancelled or skipped task can be retried; "
            f"task {task_id} is {task.status}",
            status=task.status,
        )
    return task
