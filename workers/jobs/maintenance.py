"""Built-in maintenance schedule: retention clean-up."""

from __future__ import annotations

from datetime import timedelta

from periodiq import cron

from app import store
from app.db import local_statement_timeout
from app.models import utcnow
from app.settings import get_settings
from workers import current_job, job

CLEANUP_BATCH = 500  #: tasks deleted per transaction


@job("maintenance.cleanup", periodic=cron("17 3 * * *"), misfire="latest", max_retries=1)
def cleanup(retention_days: float | None = None) -> dict[str, int]:
    """Delete finished tasks, their logs and outbox rows older than the retention.

    Daily at 03:17 UTC; ``JOBPLANE_RETENTION_DAYS`` (default 7) unless given.
    """
    ctx = current_job()
    settings = get_settings()
    days = retention_days if retention_days is not None else settings.retention_days
    cutoff = utcnow() - timedelta(days=days)
    deleted = 0
    while True:
        with ctx.engine.begin() as conn:
            # A batch over tasks with many logs may take longer than an ordinary statement.
            local_statement_timeout(conn, settings.maintenance_statement_timeout)
            batch = store.delete_finished_before(conn, cutoff, CLEANUP_BATCH)
        deleted += batch
        if batch < CLEANUP_BATCH:
            break
    ctx.log.info("deleted %d finished task(s) that ended before %s", deleted, cutoff.isoformat())
    return {"deletedTasks": deleted}
