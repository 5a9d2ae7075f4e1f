"""A worker's statements: claim a task, record progress and heartbeats, finish it (complete,
fail, retry), and give back what a stopping worker still holds.

Callers own the transaction: each function takes ``conn`` and never commits.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Connection,
    CursorResult,
    Integer,
    String,
    Text,
    bindparam,
    cast,
    select,
    tuple_,
    update,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.sql import ClauseElement

from jobplane.db import schema_of
from jobplane.domain import TaskStatus
from jobplane.models import (
    Task,
)
from jobplane.store.followups import FOLLOW_UP_COLUMNS, after_finished, has_follow_ups
from jobplane.store.guards import (
    PENDING,
    RUNNING,
    guarded_update,
    may_become,
    may_become_in_batch,
)
from jobplane.store.requeue import requeue
from jobplane.store.rows import ClaimedTask
from jobplane.store.sql import DISPATCH, NOW, TASK_ID, compiled_in_schema, unnested

#: What a claim sets and returns, one message at a time or in a batch.
_CLAIMED = {
    "status": RUNNING,
    "updated_at": NOW,
    "attempts": Task.attempts + 1,
    "started_at": NOW,
    "heartbeat_at": NOW,
    "worker": bindparam("b_worker"),
}


_CLAIMED_COLUMNS = (
    Task.id,
    Task.dispatch,
    Task.type,
    Task.params,
    Task.attempts,
    Task.timeout_seconds,
    *FOLLOW_UP_COLUMNS,
)


_CLAIM = (
    update(Task)
    .where(
        Task.id == TASK_ID,
        may_become(TaskStatus.RUNNING),
        Task.dispatch == DISPATCH,
        Task.run_after <= NOW,
        Task.cancel_requested.is_(False),
    )
    .values(_CLAIMED)
    .returning(*_CLAIMED_COLUMNS)
)


def _claimed(row: Any) -> ClaimedTask:
    task_id, dispatch, task_type, params, attempts, timeout_seconds, workflow_id, callbacks = row
    return ClaimedTask(
        task_id,
        dispatch,
        task_type,
        params,
        attempts,
        timeout_seconds,
        follow_ups=has_follow_ups(workflow_id, callbacks),
    )


def claim_task(
    conn: Connection, task_id: str, dispatch: int, *, worker: str, now: datetime
) -> ClaimedTask | None:
    """Move a task from pending to running for this publication, or return None.

    The one conditional UPDATE that makes a duplicate or stale message harmless
    (invariant 2): only the message carrying the row's current dispatch number, for a
    due, uncancelled, pending row, gets it back.
    """
    params = {"b_task_id": task_id, "b_dispatch": dispatch, "b_now": now, "b_worker": worker}
    row = conn.execute(_CLAIM, params).first()
    return None if row is None else _claimed(row)


class _Precompiled:
    """A PostgreSQL statement compiled once, run with ``exec_driver_sql``.

    For the worker's batched claim and completion, run for every job: SQLAlchemy's
    per-execution work (compile-cache lookup, parameter processing) cost a quarter of
    their CPU. Parameters go to the driver
    as given, so they must be of types psycopg takes as they are (str, int, aware
    datetimes, lists of them); the statement's own constants are filled in here. Compiled
    once per schema the connections name the tables in (``JOBPLANE_DB_SCHEMA``).
    """

    def __init__(self, statement: ClauseElement) -> None:
        self.statement = statement
        self._compiled: dict[str | None, tuple[str, dict[str, object]]] = {}

    def execute(
        self, conn: Connection, params: Mapping[str, object]
    ) -> CursorResult[*tuple[Any, ...]]:
        schema = schema_of(conn)
        sql, constants = self._compiled.get(schema) or self._compile(schema)
        return conn.exec_driver_sql(sql, {**constants, **params})

    def _compile(self, schema: str | None) -> tuple[str, dict[str, object]]:
        dialect = postgresql.psycopg.dialect()  # type: ignore[no-untyped-call]
        compiled = compiled_in_schema(self.statement, dialect, schema)
        constants = {
            name: value for name, value in compiled.params.items() if not name.startswith("b_")
        }
        self._compiled[schema] = (str(compiled), constants)
        return self._compiled[schema]


_claims = unnested("claims", id=String, dispatch=Integer)


_CLAIM_MANY = _Precompiled(
    update(Task)
    .where(
        Task.id == _claims.c.id,
        Task.dispatch == _claims.c.dispatch,
        may_become_in_batch(TaskStatus.RUNNING),
        Task.run_after <= NOW,
        Task.cancel_requested.is_(False),
    )
    .values(_CLAIMED)
    .returning(*_CLAIMED_COLUMNS)
)


def claim_tasks(
    conn: Connection, claims: Sequence[tuple[str, int]], *, worker: str, now: datetime
) -> list[ClaimedTask | None]:
    """``claim_task`` for several messages (task id, dispatch): one statement on PostgreSQL.

    One result per claim, in order. Two messages of the same publication in one batch
    (a duplicate delivery) get the row once: the first of them.
    """
    if conn.dialect.name != "postgresql":
        return [
            claim_task(conn, task_id, dispatch, worker=worker, now=now)
            for task_id, dispatch in claims
        ]
    # In id order, as every batched UPDATE here: rows locked in one order cannot deadlock.
    ordered = sorted(set(claims))
    params = {
        "b_claims_id": [task_id for task_id, _ in ordered],
        "b_claims_dispatch": [dispatch for _, dispatch in ordered],
        "b_now": now,
        "b_worker": worker,
    }
    claimed = {(row.id, row.dispatch): _claimed(row) for row in _CLAIM_MANY.execute(conn, params)}
    return [claimed.pop(claim, None) for claim in claims]


def why_not_claimable(conn: Connection, task_id: str, dispatch: int, now: datetime) -> str:
    """A person's explanation of why ``claim_task`` returned nothing."""
    row = conn.execute(
        select(Task.status, Task.dispatch, Task.run_after, Task.cancel_requested).where(
            Task.id == task_id
        )
    ).first()
    if row is None:
        return "no such task"
    if row.status != PENDING:
        return f"task is {row.status}"
    if row.cancel_requested:
        return "task is cancelled"
    if row.dispatch != dispatch:
        return f"stale message (dispatch {dispatch}, task is at {row.dispatch})"
    if row.run_after > now:
        return f"task is not due before {row.run_after.isoformat()}"
    return "task was claimed concurrently"


_COMPLETE = (
    update(Task)
    .where(Task.id == TASK_ID, Task.dispatch == DISPATCH, may_become(TaskStatus.COMPLETED))
    .values(
        status=TaskStatus.COMPLETED.value,
        updated_at=NOW,
        completed_at=NOW,
        result=bindparam("b_result", type_=Task.__table__.c.result.type),
        error=None,
    )
    .returning(*FOLLOW_UP_COLUMNS)
)


def complete_task(
    conn: Connection, task_id: str, dispatch: int, *, result: Any, now: datetime
) -> bool:
    """Record a finished body, and its follow-ups (``jobplane.store.followups``); False
    if the task is no longer this attempt's."""
    params = {"b_task_id": task_id, "b_dispatch": dispatch, "b_now": now, "b_result": result}
    completed = conn.execute(_COMPLETE, params).first()
    if completed is None:
        return False
    if has_follow_ups(*completed):
        after_finished(conn, [task_id], now)
    return True


_completions = unnested("done", id=String, dispatch=Integer, result=Text)


_COMPLETE_MANY = _Precompiled(
    update(Task)
    .where(
        Task.id == _completions.c.id,
        Task.dispatch == _completions.c.dispatch,
        may_become_in_batch(TaskStatus.COMPLETED),
    )
    .values(
        status=TaskStatus.COMPLETED.value,
        updated_at=NOW,
        completed_at=NOW,
        result=cast(_completions.c.result, postgresql.JSONB),
        error=None,
    )
    .returning(Task.id, Task.dispatch, *FOLLOW_UP_COLUMNS)
)


def complete_tasks(
    conn: Connection, completions: Sequence[tuple[str, int, Any]], now: datetime
) -> list[bool]:
    """``complete_task`` for several (task id, dispatch, result): one statement on
    PostgreSQL. One flag per completion, in order; results must be JSON-serializable.

    Tasks with follow-ups need them in the same transaction: a caller running this
    in autocommit (the worker's group commit) gives it none of those."""
    if conn.dialect.name != "postgresql":
        return [
            complete_task(conn, task_id, dispatch, result=result, now=now)
            for task_id, dispatch, result in completions
        ]
    results: dict[tuple[str, int], Any] = {}
    for task_id, dispatch, result in completions:
        results.setdefault((task_id, dispatch), result)
    ordered = sorted(results)  # in id order: see claim_tasks
    params = {
        "b_done_id": [task_id for task_id, _ in ordered],
        "b_done_dispatch": [dispatch for _, dispatch in ordered],
        "b_done_result": [json.dumps(results[key]) for key in ordered],
        "b_now": now,
    }
    rows = _COMPLETE_MANY.execute(conn, params).all()
    done = {(row.id, row.dispatch) for row in rows}
    after_finished(conn, [row.id for row in rows if has_follow_ups(*row[2:])], now)
    flags = []
    for task_id, dispatch, _ in completions:
        flags.append((task_id, dispatch) in done)
        done.discard((task_id, dispatch))  # an attempt completes once
    return flags


def is_current_run(conn: Connection, task_id: str, dispatch: int) -> bool:
    """Whether this run (task id, dispatch) is still the task's running attempt, with no
    cancellation asked for: what a job's ``ctx.transaction()`` checks as its block ends."""
    current = conn.execute(
        select(Task.id).where(
            Task.id == task_id,
            Task.dispatch == dispatch,
            Task.status == RUNNING,
            Task.cancel_requested.is_(False),
        )
    ).first()
    return current is not None


def fail_task(conn: Connection, task_id: str, dispatch: int, *, error: str, now: datetime) -> bool:
    """Record a failed last attempt, and its follow-ups."""
    values = {"error": error, "completed_at": now}
    if not guarded_update(conn, task_id, dispatch, TaskStatus.FAILED, values, now):
        return False
    after_finished(conn, [task_id], now)
    return True


def retry_task(
    conn: Connection, task_id: str, dispatch: int, *, error: str, run_after: datetime, now: datetime
) -> bool:
    """Put a failed attempt back to pending, due at ``run_after``, if it has retries left.

    A new outbox row, due at the same time, carries the bumped dispatch number: the
    retry's delay lives in the database, not in the broker.
    """
    requeued = requeue(
        conn,
        only={TaskStatus.RUNNING},
        where=[
            Task.id == task_id,
            Task.dispatch == dispatch,
            Task.retry_count < Task.max_retries,
        ],
        values={
            "retry_count": Task.retry_count + 1,
            "error": error,
            "run_after": run_after,
            "heartbeat_at": None,
            "worker": None,
        },
        now=now,
    )
    return bool(requeued)


_PROGRESS = (
    update(Task)
    .where(Task.id == TASK_ID, Task.dispatch == DISPATCH, Task.status == RUNNING)
    .values(progress=bindparam("b_progress"), total=bindparam("b_total"))
)


def record_progress(
    conn: Connection, task_id: str, dispatch: int, current: int, total: int
) -> None:
    params = {"b_task_id": task_id, "b_dispatch": dispatch, "b_progress": current, "b_total": total}
    conn.execute(_PROGRESS, params)


def beat(conn: Connection, runs: Iterable[tuple[str, int]], now: datetime) -> None:
    """Refresh the heartbeat of the runs (task id, dispatch) a worker holds.

    Only a run's own dispatch is refreshed: a stale run must never keep alive the
    heartbeat of a newer run of its task that another worker holds (or lost). A row
    another transaction holds (the worker's own completion of it, most often) is
    skipped, not waited for: the beat locks several rows in an order of its own, and
    waiting could deadlock with that transaction; the next beat comes long before the
    heartbeat timeout."""
    pairs = list(runs)
    if pairs:
        free = (
            select(Task.id)
            .where(tuple_(Task.id, Task.dispatch).in_(pairs), Task.status == RUNNING)
            .with_for_update(skip_locked=True)
        )
        conn.execute(
            update(Task).where(Task.id.in_(free.scalar_subquery())).values(heartbeat_at=now)
        )


def release_unfinished(
    conn: Connection, held: Sequence[tuple[str, int]], now: datetime
) -> list[str]:
    """Put running tasks back to pending, their attempt not counted (a graceful stop)."""
    released = []
    for task_id, dispatch in held:
        released += requeue(
            conn,
            only={TaskStatus.RUNNING},
            where=[Task.id == task_id, Task.dispatch == dispatch],
            values={
                "attempts": Task.attempts - 1,
                "run_after": now,
                "heartbeat_at": None,
                "worker": None,
            },
            now=now,
        )
    return released
