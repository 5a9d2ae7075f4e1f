"""Built-in maintenance schedule: retention clean-up (tasks, and the runs ledger)."""

from __future__ import annotations

from datetime import timedelta

from periodiq import cron

from jobplane import catchup, current_job, job, store
from jobplane.db import local_statement_timeout
from jobplane.models import utcnow
from jobplane.schedules import all_schedules
from jobplane.settings import get_settings

CLEANUP_BATCH = 500  #: tasks deleted per transaction


@job("maintenance.cleanup", periodic=cron("17 3 * * *"), misfire="latest", max_retries=1)
def cleanup(retention_days: float | None = None) -> dict[str, int]:
    """Delete finished tasks, their logs and outbox rows older than the retention, and
    the runs ledger's rows outside every schedule's catch-up window.

    Daily at 03:17 UTC; ``JOBPLANE_RETENTION_DAYS`` (default 7) unless given.
    """
    ctx = current_job()
    settings = get_settings()
    days = retention_days if retention_days is not None else settings.retention_days
    now = utcnow()
    cutoff = now - timedelta(days=days)
    deleted = 0
    while True:
        with ctx.engine.begin() as conn:
            # A batch over tasks with many logs may take longer than an ordinary statement.
            local_statement_timeout(conn, settings.maintenance_statement_timeout)
            batch = store.retention.delete_finished_before(conn, cutoff, CLEANUP_BATCH)
        deleted += batch
        if batch < CLEANUP_BATCH:
            break
    ctx.log.info("deleted %d finished task(s) that ended before %s", deleted, cutoff.isoformat())
    # Independent of the retention: the ledger keeps what catch-up may still look at.
    runs_cutoff = catchup.ledger_cutoff(all_schedules(), now)
    with ctx.engine.begin() as conn:
        forgotten = store.schedules.forget_runs_before(conn, runs_cutoff, now)
    ctx.log.info("forgot %d schedule run(s) that fired before %s", forgotten, runs_cutoff)
    return {"deletedTasks": deleted, "forgottenRuns": forgotten}
