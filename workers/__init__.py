"""Running jobs: the public ``job`` decorator and ``current_job()`` for job bodies."""

from jobplane.domain import TaskCancelled
from jobplane.workers.context import JobContext, current_job
from jobplane.workers.decorator import job

__all__ = ["JobContext", "TaskCancelled", "current_job", "job"]
