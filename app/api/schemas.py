"""Request and response bodies; camelCase on the wire, as existing clients expect."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints
from pydantic.alias_generators import to_camel

from jobplane.domain import MAX_RETRIES, TaskStatus
from jobplane.service import (
    MAX_BATCH,
    MAX_DELAY_SECONDS,
    MAX_IDEMPOTENCY_KEY,
    MAX_PRIORITY,
    MAX_TIMEOUT_SECONDS,
    MAX_TYPE_LENGTH,
    Submission,
)
from jobplane.store.rows import LogRow, TaskRow


def _not_blank(key: str) -> str:
    # An empty key would be one key shared by every client that sends the header empty.
    if not key.strip():
        raise ValueError(
            f"must not be empty or only whitespace: send 1 to {MAX_IDEMPOTENCY_KEY} "
            "characters, or no Idempotency-Key header"
        )
    return key


#: The ``Idempotency-Key`` header's value: 1 to 200 characters, not all whitespace.
IdempotencyKey = Annotated[
    str, StringConstraints(max_length=MAX_IDEMPOTENCY_KEY), AfterValidator(_not_blank)
]


class Camel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


class JobFields(Camel):
    """What every submitted job says: its type and params, its queue and priority, its
    retries and time limit. A task, a workflow's step and a callback all take them."""

    type: str = Field(
        description="the job type, e.g. demo.echo", min_length=1, max_length=MAX_TYPE_LENGTH
    )
    params: dict[str, Any] = Field(default_factory=dict, description="keyword arguments of the job")
    queue: str | None = Field(None, description="queue to publish on (default: the job's)")
    # Strict numbers: ``true``, ``1.0`` or ``"5"`` is a client's mistake, not a 1 or a 5.
    priority: int | None = Field(None, strict=True, ge=-MAX_PRIORITY, le=MAX_PRIORITY)
    max_retries: int | None = Field(None, strict=True, ge=0, le=MAX_RETRIES)
    timeout_seconds: int | None = Field(None, strict=True, gt=0, le=MAX_TIMEOUT_SECONDS)

    def job_submission(self, **more: Any) -> Submission:
        """The ``Submission`` of these fields, with ``more`` of its own."""
        return Submission(
            type=self.type,
            params=self.params,
            queue=self.queue,
            priority=self.priority,
            max_retries=self.max_retries,
            timeout_seconds=self.timeout_seconds,
            **more,
        )


class SubmitCallback(JobFields):
    """A task to enqueue when another one ends: a job to run, without a delay or
    callbacks of its own."""

    def to_submission(self) -> Submission:
        return self.job_submission()


class SuccessCallback(SubmitCallback):
    """A task to enqueue when a task completes; its params get ``task_id`` and
    ``result`` (the completed task's) beside its own."""


class FailureCallback(SubmitCallback):
    """A task to enqueue when a task fails after its retries; its params get
    ``task_id`` and ``error`` (the failed task's) beside its own."""


class JobWithCallbacks(JobFields):
    """A job, and the tasks to enqueue when it ends (a task's or a workflow step's)."""

    on_success: SuccessCallback | None = Field(
        None, description="a task to enqueue when this one completes"
    )
    on_failure: FailureCallback | None = Field(
        None, description="a task to enqueue when this one fails after its retries"
    )

    def submission_with_callbacks(self, **more: Any) -> Submission:
        """The ``Submission`` of these fields and callbacks, with ``more`` of its own."""
        return self.job_submission(
            on_success=self.on_success.to_submission() if self.on_success else None,
            on_failure=self.on_failure.to_submission() if self.on_failure else None,
            **more,
        )


class SubmitTask(JobWithCallbacks):
    """A job to run."""

    delay_seconds: float = Field(
        0,
        strict=True,
        allow_inf_nan=False,
        ge=0,
        le=MAX_DELAY_SECONDS,
        description="start no earlier than this",
    )

    def to_submission(self) -> Submission:
        return self.submission_with_callbacks(delay_seconds=self.delay_seconds)


class SubmitBatch(Camel):
    """Up to 1,000 jobs, written in one transaction."""

    tasks: list[SubmitTask] = Field(min_length=1, max_length=MAX_BATCH)


class BatchCreated(Camel):
    task_ids: list[str]


class TaskSummary(Camel):
    """A task as the admin list shows it."""

    task_id: str
    task_type: str
    queue: str
    priority: int
    status: TaskStatus
    progress: int
    total: int
    percent: int
    attempts: int
    retry_count: int
    error: str | None
    created_at: datetime
    started_at: datetime | None
    completed_at: datetime | None
    cancelled_at: datetime | None
    workflow_id: str | None = Field(description="the workflow it is a step of; null: none")

    @classmethod
    def from_task(cls, task: TaskRow) -> TaskSummary:
        return cls.model_validate(_summary(task))


class TaskDetail(TaskSummary):
    """Everything about one task."""

    params: dict[str, Any]
    result: Any = None
    max_retries: int
    timeout_seconds: int
    run_after: datetime
    cancel_requested: bool
    worker: str | None
    heartbeat_at: datetime | None
    schedule_name: str | None
    fire_time: datetime | None

    @classmethod
    def from_task(cls, task: TaskRow) -> TaskDetail:
        return cls.model_validate(
            {
                **_summary(task),
                "params": task.params,
                "result": task.result,
                "max_retries": task.max_retries,
                "timeout_seconds": task.timeout_seconds,
                "run_after": task.run_after,
                "cancel_requested": task.cancel_requested,
                "worker": task.worker,
                "heartbeat_at": task.heartbeat_at,
                "schedule_name": task.schedule_name,
                "fire_time": task.fire_time,
            }
        )


def _summary(task: TaskRow) -> dict[str, object]:
    """``TaskSummary``'s fields of ``task``, by name."""
    return {
        "task_id": task.id,
        "task_type": task.type,
        "queue": task.queue,
        "priority": task.priority,
        "status": task.status,
        "progress": task.progress,
        "total": task.total,
        "percent": percent(task.progress, task.total, task.status),
        "attempts": task.attempts,
        "retry_count": task.retry_count,
        "error": task.error,
        "created_at": task.created_at,
        "started_at": task.started_at,
        "completed_at": task.completed_at,
        "cancelled_at": task.cancelled_at,
        "workflow_id": task.workflow_id,
    }


def percent(progress: int, total: int, status: str) -> int:
    """Whole percent done: from progress/total, or 100 once completed without either."""
    if total > 0:
        return max(0, min(100, progress * 100 // total))
    return 100 if status == TaskStatus.COMPLETED.value else 0


class TaskPage(Camel):
    tasks: list[TaskSummary]
    total: int = Field(description="how many tasks match the filters")
    total_is_estimate: bool = Field(
        description="total is estimated: a search matched more tasks than are counted exactly"
    )
    page: int
    page_size: int


class Problem(Camel):
    """An error a person can act on."""

    error: str = Field(description="a stable code, e.g. unknown_job_type")
    message: str
    known_types: list[str] | None = None
    status: str | None = None
    task_id: str | None = None
    #: The workflow an Idempotency-Key was used for (409 idempotency_conflict).
    workflow_id: str | None = None


class Health(Camel):
    status: str
    checks: dict[str, str] = Field(default_factory=dict)


class LogLine(Camel):
    id: int
    level: str
    message: str
    created_at: datetime

    @classmethod
    def from_log(cls, line: LogRow) -> LogLine:
        return cls.model_validate(line, from_attributes=True)


class LogPage(Camel):
    lines: list[LogLine]
    total: int
    page: int
    page_size: int


class LastRun(Camel):
    task_id: str
    fire_time: datetime | None
    status: str


class ScheduleInfo(Camel):
    """A schedule and how its runs went."""

    name: str
    job: str
    cron: str
    timezone: str
    misfire: str
    max_lateness: float | None = Field(description="seconds; null: no limit")
    catch_up_window: float = Field(description="seconds")
    next_fire_time: datetime | None
    last_run: LastRun | None
    missed_count: int = Field(description="fire times in the window with no run recorded yet")
    skipped_count: int = Field(description="runs recorded skipped")


class ScheduleList(Camel):
    schedules: list[ScheduleInfo]


class CatchUpRequest(Camel):
    dry_run: bool = Field(False, strict=True)
    now: AwareDatetime | None = Field(
        None,
        description="with dryRun only: evaluate as of this time (ISO-8601 with an offset), "
        "inside the catch-up window: at most the longest catch_up_window before the "
        "server's clock, at most 5 minutes after it",
    )


class RunDecision(Camel):
    schedule: str
    fire_time: datetime | None = Field(description="in the schedule's timezone, with its offset")
    outcome: str = Field(
        description="enqueued | would_enqueue | already_recorded | skipped_late | not_due "
        "| not_scheduled_today"
    )
    reason: str
    timezone: str
    task_id: str | None


class CatchUpResult(Camel):
    runs: list[RunDecision]
