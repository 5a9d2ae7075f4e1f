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
    IdempotencyConflict,
    InvalidParams,
    JobplaneError,
    ParamsTooLarge,
    RetryRequested,
    StaleAttempt,
    TaskCancelled,
    TaskFailed,
    TaskNotFound,
    UnknownJobType,
)
from jobplane.library.enqueue import enqueue
from jobplane.workers.context import JobContext, current_job
from jobplane.workers.decorator import job

__all__ = [
    "IdempotencyConflict",
    "InvalidParams",
    "JobContext",
    "JobplaneError",
    "ParamsTooLarge",
    "RetryRequested",
    "StaleAttempt",
    "TaskCancelled",
    "TaskFailed",
    "TaskNotFound",
    "UnknownJobType",
    "current_job",
    "enqueue",
    "job",
]
