"""Running jobs: the public ``job`` decorator and ``current_job()`` for job bodies."""

from workers.context import JobContext, TaskCancelled, current_job
from workers.decorator import job

__all__ = ["JobContext", "TaskCancelled", "current_job", "job"]
