"""jobplane: a job platform that never loses a job.

The public names for application code and job modules::

    from jobplane import job, current_job

The rest of the package is the platform's own: the store, the HTTP API, the relay, the
workers and maintenance, started by the ``jobplane`` command.
"""

from jobplane.workers.context import JobContext, TaskCancelled, current_job
from jobplane.workers.decorator import job

__all__ = ["JobContext", "TaskCancelled", "current_job", "job"]
