"""What ``jobplane.Client`` returns: the API's JSON answers as frozen dataclasses.

Fields are the answers' camelCase keys in snake_case (``taskId`` → ``task_id``),
timestamps parsed to aware datetimes and statuses to ``TaskStatus``. Each result keeps
the JSON it was read from in ``raw``, for callers that pass the answer on unchanged (the
CLI's ``--json``). The client parses the JSON itself: this layer sits below the API and
never imports its schemas.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from jobplane.domain import TaskStatus, WorkflowStatus


def _time(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


def _required_time(value: str) -> datetime:
    return datetime.fromisoformat(value)


@dataclass(frozen=True, kw_only=True)
class TaskSummary:
    """A task as the admin list shows it (``GET /api/admin/tasks``)."""

    task_id: str
    task_type: str
    queue: str
    priority: int
    status: TaskStatus
    progress: int
    total: int
    percent: int
    #: how many times the body started
    attempts: int
    retry_count: int
    #: the last failed attempt's error
    error: str | None
    created_at: datetime
    started_at: datetime | None
    completed_at: datetime | None
    cancelled_at: datetime | None
    #: the workflow it is a step of (None: a task of its own)
    workflow_id: str | None = None
    #: the JSON object this was read from
    raw: dict[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TaskSummary:
        return cls(**_summary_fields(data), raw=data)


@dataclass(frozen=True, kw_only=True)
class Task(TaskSummary):
    """Everything about one task (``GET /api/tasks/{taskId}``)."""

    params: dict[str, Any]
    #: what the body returned, once completed
    result: Any
    max_retries: int
    timeout_seconds: int
    run_after: datetime
    cancel_requested: bool
    #: ``host:pid`` of the worker running it
    worker: str | None
    heartbeat_at: datetime | None
    schedule_name: str | None
    fire_time: datetime | None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Task:
        return cls(
            **_summary_fields(data),
            params=data["params"],
            result=data.get("result"),
            max_retries=data["maxRetries"],
            timeout_seconds=data["timeoutSeconds"],
            run_after=_required_time(data["runAfter"]),
            cancel_requested=data["cancelRequested"],
            worker=data.get("worker"),
            heartbeat_at=_time(data.get("heartbeatAt")),
            schedule_name=data.get("scheduleName"),
            fire_time=_time(data.get("fireTime")),
            raw=data,
        )


def _summary_fields(data: dict[str, Any]) -> dict[str, Any]:
    return {
        "task_id": data["taskId"],
        "task_type": data["taskType"],
        "queue": data["queue"],
        "priority": data["priority"],
        "status": TaskStatus(data["status"]),
        "progress": data["progress"],
        "total": data["total"],
        "percent": data["percent"],
        "attempts": data["attempts"],
        "retry_count": data["retryCount"],
        "error": data.get("error"),
        "created_at": _required_time(data["createdAt"]),
        "started_at": _time(data.get("startedAt")),
        "completed_at": _time(data.get("completedAt")),
        "cancelled_at": _time(data.get("cancelledAt")),
        "workflow_id": data.get("workflowId"),
    }


@dataclass(frozen=True, kw_only=True)
class TaskPage:
    """One page of the admin list, newest first."""

    tasks: list[TaskSummary]
    #: tasks matching the filters, on every page
    total: int
    #: ``total`` is an estimate (a search matched more tasks than the API counts exactly)
    total_is_estimate: bool
    page: int
    page_size: int
    raw: dict[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TaskPage:
        return cls(
            tasks=[TaskSummary.from_json(task) for task in data["tasks"]],
            total=data["total"],
            total_is_estimate=data.get("totalIsEstimate", False),
            page=data["page"],
            page_size=data["pageSize"],
            raw=data,
        )


@dataclass(frozen=True, kw_only=True)
class LogLine:
    """One line a job logged through ``ctx.log``."""

    id: int
    level: str
    message: str
    created_at: datetime

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LogLine:
        return cls(
            id=data["id"],
            level=data["level"],
            message=data["message"],
            created_at=_required_time(data["createdAt"]),
        )


@dataclass(frozen=True, kw_only=True)
class LogPage:
    """One page of a task's log, oldest line first."""

    lines: list[LogLine]
    #: lines matching the level filter, on every page
    total: int
    page: int
    page_size: int
    raw: dict[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LogPage:
        return cls(
            lines=[LogLine.from_json(line) for line in data["lines"]],
            total=data["total"],
            page=data["page"],
            page_size=data["pageSize"],
            raw=data,
        )


@dataclass(frozen=True, kw_only=True)
class WorkflowSummary:
    """A workflow as the admin list shows it (``GET /api/admin/workflows``)."""

    workflow_id: str
    status: WorkflowStatus
    step_count: int
    #: how many of its steps are in each task status
    steps_by_status: dict[str, int]
    #: completed steps, in whole percent of all its steps
    percent: int
    #: why it failed or was cancelled: the step that did, and its error
    error: str | None
    created_at: datetime
    updated_at: datetime
    completed_at: datetime | None
    raw: dict[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> WorkflowSummary:
        return cls(**_workflow_fields(data), raw=data)


@dataclass(frozen=True, kw_only=True)
class WorkflowStep(TaskSummary):
    """A step of a workflow: its task, and how many steps before it have yet to complete."""

    #: steps before it that have not completed yet
    waiting_on: int

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> WorkflowStep:
        return cls(**_summary_fields(data), waiting_on=data["waitingOn"], raw=data)


@dataclass(frozen=True, kw_only=True)
class Workflow(WorkflowSummary):
    """Everything about one workflow (``GET /api/admin/workflows/{workflowId}``)."""

    #: the tree as submitted, each step its task id (``{"chain": [...]}``, …)
    shape: Any
    #: once completed: its last step's result (a chain's), or its members' (a group's)
    result: Any
    #: every step, in the order of the shape
    steps: list[WorkflowStep]

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Workflow:
        return cls(
            **_workflow_fields(data),
            shape=data["shape"],
            result=data.get("result"),
            steps=[WorkflowStep.from_json(step) for step in data["steps"]],
            raw=data,
        )


def _workflow_fields(data: dict[str, Any]) -> dict[str, Any]:
    return {
        "workflow_id": data["workflowId"],
        "status": WorkflowStatus(data["status"]),
        "step_count": data["stepCount"],
        "steps_by_status": data["stepsByStatus"],
        "percent": data["percent"],
        "error": data.get("error"),
        "created_at": _required_time(data["createdAt"]),
        "updated_at": _required_time(data["updatedAt"]),
        "completed_at": _time(data.get("completedAt")),
    }


@dataclass(frozen=True, kw_only=True)
class WorkflowPage:
    """One page of the workflow list, newest first."""

    workflows: list[WorkflowSummary]
    #: workflows matching the filter, on every page
    total: int
    page: int
    page_size: int
    raw: dict[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> WorkflowPage:
        return cls(
            workflows=[WorkflowSummary.from_json(item) for item in data["workflows"]],
            total=data["total"],
            page=data["page"],
            page_size=data["pageSize"],
            raw=data,
        )
