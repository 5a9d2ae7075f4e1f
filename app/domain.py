"""The task vocabulary shared by the API, the relay and the workers.

States and the transitions between them live here, beside the errors every layer
raises; nothing in this module touches the database. The transition table,
``ALLOWED_FROM``, is the only place that says which status a task may move from: every
statement of ``jobplane.store`` that writes a status builds its status guard from it
(``jobplane.store.guards``), naming fewer states where it moves a task from fewer.
"""

from __future__ import annotations

import enum
from typing import Any

from dramatiq.errors import Retry
from dramatiq.threading import Interrupt


class TaskStatus(enum.StrEnum):
    """The life of a task (the vocabulary its users' existing clients speak)."""

    PENDING = "pending"  #: committed and waiting: in the outbox, on the broker, or until run_after
    RUNNING = "running"  #: claimed by a worker; its body is executing
    COMPLETED = "completed"  #: the body returned; ``result`` holds its value
    FAILED = "failed"  #: the last allowed attempt raised; ``error`` says why
    CANCELLED = "cancelled"  #: cancelled by an admin before or while it ran
    SKIPPED = "skipped"  #: a scheduled run catch-up decided not to run; ``error`` says why

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_STATES


#: Most retries a task may have (the API's ``maxRetries``, ``@job(max_retries=…)`` and
#: ``JOBPLANE_DEFAULT_MAX_RETRIES`` alike). With the default 300 s backoff cap, 100
#: retries span more than eight hours.
MAX_RETRIES = 100

TERMINAL_STATES = frozenset(
    {TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.CANCELLED, TaskStatus.SKIPPED}
)

#: For each target state, the states a task may move to it from. Every UPDATE that
#: changes a status is guarded by this table (``WHERE status IN ALLOWED_FROM[to]``, or
#: fewer of its states: a retry is only ever of a running task); a finished task only
#: leaves its state through an admin's retry.
ALLOWED_FROM: dict[TaskStatus, frozenset[TaskStatus]] = {
    TaskStatus.PENDING: frozenset(
        {
            #: published again with a new dispatch number: its message was lost, or it
            #: waited for a slot of its job type's concurrency limit
            TaskStatus.PENDING,
            #: a failed attempt's retry, a lost worker's task, a stopping worker's task
            TaskStatus.RUNNING,
            #: an admin's retry ("tasks retry"): a new run, its retries counted afresh
            TaskStatus.FAILED,
            TaskStatus.CANCELLED,
            #: an admin's retry of a run the misfire policy skipped: run it anyway
            TaskStatus.SKIPPED,
        }
    ),
    #: a worker's claim, for the message of the task's current dispatch
    TaskStatus.RUNNING: frozenset({TaskStatus.PENDING}),
    TaskStatus.COMPLETED: frozenset({TaskStatus.RUNNING}),
    #: an attempt with no retry left (a lost worker's too)
    TaskStatus.FAILED: frozenset({TaskStatus.RUNNING, TaskStatus.PENDING}),
    #: an admin's cancel of a pending task; a running one once its body stopped
    TaskStatus.CANCELLED: frozenset({TaskStatus.PENDING, TaskStatus.RUNNING}),
    #: no task becomes skipped later: a skipped run is created so (``INITIAL_STATES``)
    TaskStatus.SKIPPED: frozenset(),
}

#: The states a task is created in: pending (a submission, a scheduled run to enqueue),
#: or skipped (a scheduled run the misfire policy did not run, recorded with its reason).
INITIAL_STATES = frozenset({TaskStatus.PENDING, TaskStatus.SKIPPED})


def can_transition(current: TaskStatus, target: TaskStatus) -> bool:
    """Whether a task in ``current`` may move to ``target``."""
    return current in ALLOWED_FROM[target]


class WorkflowStatus(enum.StrEnum):
    """The life of a workflow (``jobplane.chain``, ``jobplane.group``): decided by its
    steps' ends, in their transactions."""

    RUNNING = "running"  #: it has steps still to run
    COMPLETED = "completed"  #: every step completed
    FAILED = "failed"  #: a step failed after its retries; the steps after it were cancelled
    CANCELLED = "cancelled"  #: cancelled, or a step of it was; the steps after it too

    @property
    def is_terminal(self) -> bool:
        return self is not WorkflowStatus.RUNNING


class JobplaneError(Exception):
    """Something went wrong in jobplane."""

    #: The HTTP status of the API's answer when ``jobplane.Client`` raised this error
    #: from one; None when it was raised in this process, or the API was not reached.
    http_status: int | None = None

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or self.__doc__)
        self.message = message or (self.__doc__ or "").strip()


class TaskNotFound(JobplaneError):
    """No task has that id."""


class WorkflowNotFound(JobplaneError):
    """No workflow has that id."""


class WorkflowFailed(JobplaneError):
    """The workflow ended failed (or cancelled): ``error`` names the step that did."""

    def __init__(self, message: str, *, workflow_id: str, status: str, error: str | None) -> None:
        super().__init__(message)
        self.workflow_id = workflow_id
        self.status = status
        self.error = error


class InvalidTransition(JobplaneError):
    """The task is not in a state that allows this."""

    def __init__(self, message: str, *, status: str | None = None) -> None:
        super().__init__(message)
        self.status = status


class UnknownJobType(JobplaneError):
    """No job of that type is registered."""

    def __init__(self, job_type: str, known: list[str], *, message: str | None = None) -> None:
        # ``message``: the whole message as someone else worded it (the API's answer,
        # which may name a submission of a batch), instead of the one made here.
        super().__init__(
            message or f"unknown job type {job_type!r}; known types: {', '.join(known) or '(none)'}"
        )
        self.known = known


class InvalidParams(JobplaneError):
    """The job's params are not acceptable."""


class ParamsTooLarge(JobplaneError):
    """The job's params are larger than the limit."""


class IdempotencyConflict(JobplaneError):
    """The Idempotency-Key was already used for a different submission: ``task_id`` names
    the task it was used for, or ``workflow_id`` the workflow (keys of tasks and keys of
    workflows are apart: one of each may share a key)."""

    def __init__(
        self, message: str, *, task_id: str | None = None, workflow_id: str | None = None
    ) -> None:
        super().__init__(message)
        self.task_id = task_id
        self.workflow_id = workflow_id


class Unauthorized(JobplaneError):
    """The API refused the token: missing or wrong (HTTP 401), or read-only where a change
    was asked (403). Send ``JOBPLANE_API_TOKEN``, the read-write token."""


class ApiUnavailable(JobplaneError):
    """The API could not be reached, or could not answer (HTTP 5xx, 503 while its
    database is unreachable): try again later, after ``retry_after`` seconds when the API
    said how long."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class TaskCancelled(Interrupt):
    """The task was cancelled: raised in a job's thread when an admin cancels its task,
    and by ``TaskHandle.wait`` when the task it waits for ends cancelled.

    A ``BaseException`` (as Dramatiq's time limit is), so that a job's own
    ``except Exception`` does not swallow it by accident.
    """


class TaskFailed(JobplaneError):
    """The task ended failed: its last attempt raised (``error`` says how)."""

    def __init__(self, message: str, *, task_id: str, error: str | None) -> None:
        super().__init__(message)
        self.task_id = task_id
        self.error = error


class StaleAttempt(JobplaneError):
    """This attempt is no longer the task's: it was recovered, delivered twice or
    cancelled, so its ``ctx.transaction()`` rolled back and wrote nothing."""


class RetryRequested(JobplaneError, Retry):
    """The job asked for another attempt (``ctx.retry``): this attempt fails, and the
    next one is due after exactly ``delay_seconds`` (no backoff, no jitter), counted
    against the task's retries; with none left, the task fails with ``reason``.

    A Dramatiq ``Retry`` too, only so that Dramatiq does not log it as an error; the
    lifecycle, not Dramatiq, schedules the retry.
    """

    def __init__(self, *, delay: float, reason: str = "") -> None:
        JobplaneError.__init__(
            self, f"retry requested in {delay:g} s" + (f": {reason}" if reason else "")
        )
        self.delay_seconds = delay
        self.delay = round(delay * 1000)  # Dramatiq's Retry says it in milliseconds
        self.reason = reason


def outcome(task_id: str, status: str, result: Any, error: str | None) -> Any:
    """What waiting for a finished task gives: its result, or the exception its status
    means (``TaskHandle.wait`` and the HTTP client's ``wait`` alike).

    ``skipped`` (a scheduled run the misfire policy did not run) is ``TaskFailed``, its
    error the reason: the run has no result, and a caller expecting one must not take
    a None for success.
    """
    if status == TaskStatus.COMPLETED:
        return result
    if status == TaskStatus.CANCELLED:
        raise TaskCancelled(f"task {task_id} was cancelled")
    if status == TaskStatus.SKIPPED:
        raise TaskFailed(f"task {task_id} was skipped: {error}", task_id=task_id, error=error)
    if status == TaskStatus.FAILED:
        raise TaskFailed(f"task {task_id} failed: {error}", task_id=task_id, error=error)
    raise ValueError(f"task {task_id} is {status}, not finished")
