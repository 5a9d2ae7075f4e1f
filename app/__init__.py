"""jobplane: a job platform that never loses a job.

The public names for application code and job modules::

    import jobplane
    from jobplane import job, current_job

    with Session(engine) as session, session.begin():  # your own transaction
        session.add(order)
        jobplane.enqueue(session, "orders.fulfil", {"order_id": order.id})

The rest of the package is the platform's own: the store, the HTTP API, the relay, the
workers and maintenance, started by the ``jobplane`` command.
"""

from jobplane.domain import (
    ApiUnavailable,
    IdempotencyConflict,
    InvalidParams,
    InvalidTransition,
    JobplaneError,
    ParamsTooLarge,
    RetryRequested,
    StaleAttempt,
    TaskCancelled,
    TaskFailed,
    TaskNotFound,
    Unauthorized,
    UnknownJobType,
    WorkflowFailed,
    WorkflowNotFound,
)
from jobplane.library.client import AsyncClient, Client
from jobplane.library.enqueue import NewTask, enqueue, enqueue_async, enqueue_many
from jobplane.library.handles import TaskHandle, task
from jobplane.library.jobs import Job
from jobplane.library.results import (
    LogLine,
    LogPage,
    Task,
    TaskPage,
    TaskSummary,
    Workflow,
    WorkflowPage,
    WorkflowStep,
    WorkflowSummary,
)
from jobplane.library.workflow_handles import WorkflowHandle, workflow
from jobplane.library.workflows import Chain, Group, Step, chain, group
from jobplane.schedules import ScheduleNotFound
from jobplane.workers.context import JobContext, current_job
from jobplane.workers.decorator import job

__all__ = [
    "ApiUnavailable",
    "Chain",
    "Group",
    "Step",
    "AsyncClient",
    "Client",
    "IdempotencyConflict",
    "InvalidParams",
    "InvalidTransition",
    "Job",
    "JobContext",
    "JobplaneError",
    "LogLine",
    "LogPage",
    "NewTask",
    "ParamsTooLarge",
    "RetryRequested",
    "ScheduleNotFound",
    "StaleAttempt",
    "Task",
    "TaskCancelled",
    "TaskFailed",
    "TaskHandle",
    "TaskNotFound",
    "TaskPage",
    "TaskSummary",
    "Unauthorized",
    "UnknownJobType",
    "Workflow",
    "WorkflowFailed",
    "WorkflowHandle",
    "WorkflowNotFound",
    "WorkflowPage",
    "WorkflowStep",
    "WorkflowSummary",
    "chain",
    "current_job",
    "enqueue",
    "enqueue_async",
    "enqueue_many",
    "group",
    "job",
    "task",
    "workflow",
]
