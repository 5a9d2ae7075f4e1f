"""``jobplane.enqueue``: a task row and its outbox row added to the caller's own
transaction (a SQLAlchemy Session or Connection), committed with it or not at all.

The relay publishes only outbox rows it can read, so a job enqueued beside the caller's
own rows never starts before they are committed, and never at all if they roll back.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any, overload

from sqlalchemy import Connection
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlalchemy.orm import Session

from jobplane import service, store
from jobplane.db import jobplane_schema
from jobplane.domain import JobplaneError
from jobplane.library import workflows
from jobplane.library.engine import library_settings
from jobplane.library.workflow_handles import WorkflowHandle
from jobplane.library.workflows import Chain, Group, Node, Step
from jobplane.models import utcnow
from jobplane.service import Submission

if TYPE_CHECKING:
    from jobplane.library.jobs import Job

#: Tasks per INSERT statement in ``enqueue_many``: big enough that a round trip costs
#: little per task, small enough that one statement's JSON stays a few megabytes.
CHUNK = 2000


@dataclass(frozen=True)
class NewTask:
    """One task for ``enqueue_many``: the arguments of ``enqueue`` but the idempotency key.

    ``jobplane.NewTask("emails.send", {"to": address}, queue="mail")``
    """

    type: str | Job[..., Any]
    params: Mapping[str, Any] | None = None
    queue: str | None = None
    priority: int | None = None
    delay: float | timedelta | None = None
    max_retries: int | None = None
    timeout: int | None = None

    def submission(self) -> Submission:
        return Submission(
            type=self.type if isinstance(self.type, str) else self.type.name,
            params=_as_dict(self.params),
            queue=self.queue,
            priority=self.priority,
            delay_seconds=_seconds(self.delay),
            max_retries=self.max_retries,
            timeout_seconds=self.timeout,
        )


@overload
def enqueue(
    db: Session | Connection, type: Node, /, *, idempotency_key: str | None = None
) -> WorkflowHandle: ...


@overload
def enqueue(
    db: Session | Connection,
    type: str | Job[..., Any],
    params: Mapping[str, Any] | None = None,
    *,
    queue: str | None = None,
    priority: int | None = None,
    delay: float | timedelta | None = None,
    max_retries: int | None = None,
    timeout: int | None = None,
    idempotency_key: str | None = None,
) -> str: ...


def enqueue(
    db: Session | Connection,
    type: str | Job[..., Any] | Node,
    params: Mapping[str, Any] | None = None,
    *,
    queue: str | None = None,
    priority: int | None = None,
    delay: float | timedelta | None = None,
    max_retries: int | None = None,
    timeout: int | None = None,
    idempotency_key: str | None = None,
) -> str | WorkflowHandle:
    """Add a task to ``db``'s open transaction (a Session or Connection); its id. Or,
    given a workflow (``jobplane.chain``, ``jobplane.group``, ``job.s()``), add it with
    all of its steps; a ``WorkflowHandle`` on it (with an ``idempotency_key`` used
    before for the same workflow, on that one; for another, ``IdempotencyConflict``).
    A workflow takes no params or task options (``TypeError``): its steps carry their own.

    Commits nothing: the task exists, and its job runs, once the caller commits; a
    rollback leaves no trace of it. Everything is checked before anything is written,
    as the HTTP API checks it: ``InvalidParams``, ``ParamsTooLarge``,
    ``IdempotencyConflict`` (the key already names a different submission; the same
    submission again returns the first task's id).

    ``type`` is a ``Job`` or a job type's name. A name this process has not registered
    (it does not import that job's module) is accepted: the task gets the settings'
    defaults for what is not given (queue ``"default"``, retries, timeout), not the
    job's own, and its params are checked against the job's signature by the worker,
    which fails a task whose params do not fit at once, without retries.

    ``delay``: seconds (or a ``timedelta``) before the job may start. ``timeout``:
    seconds one attempt may run. With ``JOBPLANE_DB_SCHEMA``, jobplane's tables are
    found in that schema; the caller's own statements keep theirs.
    """
    settings = library_settings()
    conn = _connection(db)
    if isinstance(type, Step | Chain | Group):
        if params is not None:
            raise TypeError("a workflow is enqueued alone: its steps carry their own params")
        options = {"queue": queue, "priority": priority, "delay": delay}
        options |= {"max_retries": max_retries, "timeout": timeout}
        given = [name for name, value in options.items() if value is not None]
        if given:
            raise TypeError(
                f"a workflow takes no {', '.join(given)}: it starts at once, and its "
                "steps take their options from job.s(...).set(queue=..., priority=..., "
                "max_retries=..., timeout=...)"
            )
        with jobplane_schema(conn, settings.db_schema):
            submitted = workflows.submit(
                conn,
                type,
                settings,
                utcnow(),
                registered_only=False,
                idempotency_key=idempotency_key,
            )
        return WorkflowHandle(submitted.workflow_id, engine=conn.engine)
    submission = NewTask(type, params, queue, priority, delay, max_retries, timeout).submission()
    if idempotency_key is None:
        task = service.build_task(submission, settings, utcnow(), registered_only=False)
        with jobplane_schema(conn, settings.db_schema):
            store.tasks.insert_tasks(conn, [task])
        return task.id
    service.check_idempotency_key(idempotency_key)
    with jobplane_schema(conn, settings.db_schema):
        task, _new = service.submit(
            conn,
            submission,
            settings,
            utcnow(),
            idempotency_key=idempotency_key,
            registered_only=False,
        )
    return task.id


async def enqueue_async(
    db: AsyncSession | AsyncConnection,
    type: str | Job[..., Any],
    params: Mapping[str, Any] | None = None,
    *,
    queue: str | None = None,
    priority: int | None = None,
    delay: float | timedelta | None = None,
    max_retries: int | None = None,
    timeout: int | None = None,
    idempotency_key: str | None = None,
) -> str:
    """``enqueue`` on an ``AsyncSession`` or ``AsyncConnection`` (its open transaction)."""

    def add(sync_db: Session | Connection) -> str:
        return enqueue(
            sync_db,
            type,
            params,
            queue=queue,
            priority=priority,
            delay=delay,
            max_retries=max_retries,
            timeout=timeout,
            idempotency_key=idempotency_key,
        )

    return await db.run_sync(add)


def enqueue_many(db: Session | Connection, tasks: Iterable[NewTask]) -> list[str]:
    """Add ``tasks`` to ``db``'s open transaction, in few statements; their ids in order.

    Every task is checked before any is written; an error names the task by its index
    (``tasks[3]: …``). Commits nothing, as ``enqueue``.
    """
    settings = library_settings()
    now = utcnow()
    rows = []
    for index, new_task in enumerate(tasks):
        try:
            rows.append(
                service.build_task(new_task.submission(), settings, now, registered_only=False)
            )
        except JobplaneError as error:
            error.message = f"tasks[{index}]: {error.message}"
            error.args = (error.message,)
            raise
    conn = _connection(db)
    with jobplane_schema(conn, settings.db_schema):
        for start in range(0, len(rows), CHUNK):
            store.tasks.insert_tasks(conn, rows[start : start + CHUNK])
    return [row.id for row in rows]


def _connection(db: Session | Connection) -> Connection:
    """The connection of ``db``'s transaction (a Session begins one if it has none)."""
    if isinstance(db, Session):
        return db.connection()
    if isinstance(db, Connection):
        return db
    raise TypeError(
        f"jobplane.enqueue needs a SQLAlchemy Session or Connection, not {db.__class__.__name__}"
        " (for an AsyncSession or AsyncConnection: await jobplane.enqueue_async)"
    )


def _as_dict(params: Mapping[str, Any] | None) -> Any:
    # Anything else goes on as it is, for the service to refuse with InvalidParams.
    if params is None:
        return {}
    return dict(params) if isinstance(params, Mapping) else params


def _seconds(delay: float | timedelta | None) -> float:
    if delay is None:
        return 0
    if isinstance(delay, timedelta):
        return delay.total_seconds()
    return delay
