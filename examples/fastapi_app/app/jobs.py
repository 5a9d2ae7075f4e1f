"""The app's jobs: imported by the app, which enqueues them, and by jobplane's
processes, which run them (``JOBPLANE_JOBS=app.jobs``)."""

from __future__ import annotations

from app.models import Report
from jobplane import current_job, job


@job("reports.generate")
def generate_report(report_id: int) -> dict[str, int]:
    """Write the report's body; the task's result says how long it came out."""
    ctx = current_job()
    # The session's writes commit together with this task's completion, exactly once:
    # a retried or duplicate run cannot write the body twice.
    with ctx.transaction() as session:
        # Enqueued in the transaction that inserted the report: the row is always there.
        report = session.get_one(Report, report_id)
        report.body = f"{report.title}\n\nWritten by task {ctx.task_id}, attempt {ctx.attempt}."
        report.status = "done"
        words = len(report.body.split())
    return {"report_id": report_id, "words": words}
