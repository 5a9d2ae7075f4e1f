"""The rows the store hands out and takes in: one frozen dataclass per kind of row.

The store builds them from what its statements return; the service, the API schemas,
the workers and maintenance read their attributes. No driver row and no dict of
columns travels between the layers (River's ``rivertype.JobRow``). The relay's and
the rescuer's messages (``OutboxMessage``, ``Publication``) stay NamedTuples beside their
statements: values compared and hashed, made one per message on the relay's hot path.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

from sqlalchemy import Row

from jobplane.domain import TaskStatus
from jobplane.models import Task


@dataclass(frozen=True, slots=True)
class TaskRow:
    """A task: every column of the tasks table, in its order (``jobplane.models.Task``
    says what each holds).

    Also what a new task is inserted from: ``jobplane.service.build_task`` makes the
    whole row, so that the API answers a submission without reading it back.
    """

    id: str
    type: str
    queue: str
    priority: int
    params: dict[str, Any]  # a JSON object
    status: str
    progress: int
    total: int
    result: Any  # any JSON value
    error: str | None
    attempts: int
    retry_count: int
    max_retries: int
    timeout_seconds: int
    run_after: datetime
    dispatch: int
    idempotency_key: str | None
    request_hash: str | None
    cancel_requested: bool
    waiting_since: datetime | None
    heartbeat_at: datetime | None
    worker: str | None
    created_at: datetime
    started_at: datetime | None
    completed_at: datetime | None
    cancelled_at: datetime | None
    schedule_name: str | None
    fire_time: datetime | None
    updated_at: datetime | None
    workflow_id: str | None = None
    waiting_on: int = 0
    pipe_from: Any = None  # a tree of task ids
    callbacks: dict[str, Any] | None = None

    @classmethod
    def new(
        cls,
        *,
        id: str,
        type: str,
        queue: str,
        priority: int,
        params: dict[str, Any],
        max_retries: int,
        timeout_seconds: int,
        run_after: datetime,
        now: datetime,
        **columns: Any,
    ) -> TaskRow:
        """A new pending task, not started yet; ``columns`` sets any other column."""
        fresh: dict[str, Any] = {
            "progress": 0,
            "total": 0,
            "result": None,
            "error": None,
            "attempts": 0,
            "retry_count": 0,
            "dispatch": 1,
            "idempotency_key": None,
            "request_hash": None,
            "cancel_requested": False,
            "waiting_since": None,
            "heartbeat_at": None,
            "worker": None,
            "started_at": None,
            "completed_at": None,
            "cancelled_at": None,
            "schedule_name": None,
            "fire_time": None,
        }
        return cls(
            id=id,
            status=TaskStatus.PENDING.value,
            type=type,
            queue=queue,
            priority=priority,
            params=params,
            max_retries=max_retries,
            timeout_seconds=timeout_seconds,
            run_after=run_after,
            created_at=now,
            updated_at=now,
            **{**fresh, **columns},
        )

    @classmethod
    def from_row(cls, row: Row[*tuple[Any, ...]]) -> TaskRow:
        """The task of a row of ``TASK_COLUMNS``."""
        return cls(*row)

    def columns(self) -> dict[str, object]:
        """Column name → value, as an INSERT takes them."""
        return dict(zip(TASK_FIELDS, _task_values(self), strict=True))


#: The tasks table's column names, in ``TaskRow``'s order.
TASK_FIELDS = tuple(field.name for field in fields(TaskRow))


_task_values = operator.attrgetter(*TASK_FIELDS)


#: What to select for ``TaskRow.from_row``.
TASK_COLUMNS = tuple(Task.__table__.c[name] for name in TASK_FIELDS)


@dataclass(frozen=True, slots=True)
class ClaimedTask:
    """What a worker's claim returns: what it needs to run the body."""

    id: str
    dispatch: int
    type: str
    params: dict[str, Any]
    #: Which start of the body this is (1 for the first).
    attempts: int
    timeout_seconds: int
    #: Whether its end has follow-ups (it is a workflow's step, or has callbacks), which
    #: must be written in the transaction that records its outcome.
    follow_ups: bool = False


@dataclass(frozen=True, slots=True)
class NewLogLine:
    """A line a job body logged, to append to its task's log."""

    task_id: str
    level: str
    message: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class LogRow:
    """A line of a task's log, as the API lists it."""

    id: int
    level: str
    message: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class ScheduleRunRow:
    """The latest run of a schedule (a task; None fire time: one started by hand)."""

    task_id: str
    fire_time: datetime | None
    status: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class WorkerRow:
    """A worker (host:pid) that reported recently."""

    worker: str
    last_seen_at: datetime
    #: Tasks it is running now.
    running: int


@dataclass(frozen=True, slots=True)
class TaskCountRow:
    """How many tasks there are of one type, queue, schedule ("" for none) and status,
    and the retries they took (``jobplane.models.TaskCount``)."""

    type: str
    queue: str
    schedule: str
    status: str
    tasks: int
    retries: int


@dataclass(frozen=True, slots=True)
class CounterRow:
    """A metric counter pushed through the database (``jobplane.counters``)."""

    name: str
    #: Its one label's value, or "" for none.
    label: str
    value: int


@dataclass(frozen=True, slots=True)
class DurationRow:
    """Run times of one job type's recently completed tasks, as a histogram."""

    type: str
    #: For each bound asked for (seconds), how many took at most that long.
    within: tuple[int, ...]
    count: int
    #: Their run times added up, in seconds.
    seconds: float
