"""Putting back what a dead worker or a forgetful broker let go: stale running tasks, and
published tasks whose message may be lost.

Callers own the transaction: each function takes ``conn`` and never commits.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple

from sqlalchemy import (
    ColumnElement,
    Connection,
    func,
    select,
    tuple_,
    update,
)

from jobplane.domain import TaskStatus
from jobplane.models import (
    Outbox,
    Task,
)
from jobplane.store.followups import after_finished
from jobplane.store.guards import PENDING, may_become
from jobplane.store.requeue import requeue

#: What recovery takes: the running tasks (their worker's heartbeat stopped).
_FROM_RUNNING = {TaskStatus.RUNNING}


@dataclass(frozen=True)
class Recovery:
    retried: list[str]
    failed: list[str]


def recover_stale_running(conn: Connection, stale_before: datetime, now: datetime) -> Recovery:
    """Running tasks whose heartbeat stopped: their worker is gone.

    The lost attempt counts against the task's retries ("worker lost"), so a job that
    kills its worker cannot loop forever.

    Nothing is recovered while the database server itself has been up for less than
    the heartbeat timeout: after a restart every heartbeat is old, but live workers
    have not had the time to beat again, and their finished bodies' outcomes are being
    written (recovering those would run them twice).
    """
    up_since = database_up_since(conn)
    if up_since is not None and up_since > stale_before:
        return Recovery([], [])
    stale = Task.heartbeat_at < stale_before
    error = "worker lost: no heartbeat since before " + stale_before.isoformat()
    cancelled = conn.execute(
        update(Task)
        .where(
            may_become(TaskStatus.CANCELLED, _FROM_RUNNING),
            stale,
            Task.cancel_requested.is_(True),
        )
        .values(status=TaskStatus.CANCELLED.value, updated_at=now, cancelled_at=now, error=error)
        .returning(Task.id)
    ).scalars()
    after_finished(conn, list(cancelled), now)
    retried = requeue(
        conn,
        only=_FROM_RUNNING,
        where=[stale, Task.retry_count < Task.max_retries],
        values={
            "retry_count": Task.retry_count + 1,
            "error": error,
            "run_after": now,
            "heartbeat_at": None,
            "worker": None,
        },
        now=now,
    )
    failed = conn.execute(
        update(Task)
        .where(
            may_become(TaskStatus.FAILED, _FROM_RUNNING),
            stale,
            Task.retry_count >= Task.max_retries,
        )
        .values(status=TaskStatus.FAILED.value, updated_at=now, error=error, completed_at=now)
        .returning(Task.id)
    ).scalars()
    failed_ids = list(failed)
    after_finished(conn, failed_ids, now)
    return Recovery(retried, failed_ids)


def database_up_since(conn: Connection) -> datetime | None:
    """When the PostgreSQL server started (None on SQLite, which never restarts apart)."""
    if conn.dialect.name != "postgresql":
        return None
    started: datetime = conn.execute(select(func.pg_postmaster_start_time())).scalar_one()
    return started


def _published() -> ColumnElement[bool]:
    """Of the pending tasks, those whose message the broker was given: no outbox row left
    to publish, not parked waiting for a concurrency slot, and not a workflow's step
    waiting for the steps before it (those have no message on purpose). The caller says
    they are pending (a read, or a status guard)."""
    # NOT IN, not NOT EXISTS: PostgreSQL hashes the outbox's task ids once. With no index
    # on outbox.task_id, an anti-join planned from stale statistics loops over the whole
    # outbox per pending task (seen: 16 s for 20,000 of each, the relay stalled behind it).
    unpublished = Task.id.in_(select(Outbox.task_id))
    return Task.waiting_since.is_(None) & (Task.waiting_on == 0) & ~unpublished


class Publication(NamedTuple):
    """A published task's current message: which queue holds it, under which dispatch."""

    task_id: str
    dispatch: int
    queue: str


def republish_pending(
    conn: Connection, *, now: datetime, only: Sequence[Publication] | None = None
) -> list[str]:
    """Publish again the published, still pending tasks (only those of ``only``, if given,
    and only while they still have the dispatch number it names).

    For when the broker lost their messages. The bumped dispatch number makes any copy
    that did survive unable to claim the task. A task claimed, retried or republished
    since ``only`` was read is left alone: its dispatch or its status has changed.
    """
    conditions = [_published()]
    if only is not None:
        if not only:
            return []
        pairs = [(publication.task_id, publication.dispatch) for publication in only]
        conditions.append(tuple_(Task.id, Task.dispatch).in_(pairs))
    return requeue(
        conn, only={TaskStatus.PENDING}, where=conditions, values={"run_after": now}, now=now
    )


def unclaimed_publications(
    conn: Connection, *, due_before: datetime, after: str, limit: int
) -> list[Publication]:
    """Published tasks due before ``due_before`` and still pending: up to ``limit`` of
    them, by task id, from the first one after ``after`` (``""``: from the start)."""
    rows = conn.execute(
        select(Task.id, Task.dispatch, Task.queue)
        .where(Task.status == PENDING, _published(), Task.run_after < due_before, Task.id > after)
        .order_by(Task.id)
        .limit(limit)
    )
    return [Publication(*row) for row in rows]
