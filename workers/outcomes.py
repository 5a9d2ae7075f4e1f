"""What a finished attempt writes: its completion, failure, retry or cancellation.

Each function runs in the caller's transaction and is guarded by the run's dispatch
(``jobplane.store.claims``), so the lifecycle may repeat it through an outage. The
wording of what is stored (the one-line error, the log line, what a result needs to be
storable) lives here too.
"""

from __future__ import annotations

import logging
import traceback
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from dramatiq.middleware import TimeLimitExceeded
from sqlalchemy import Connection

from jobplane import store, stored_json
from jobplane.domain import RetryRequested
from jobplane.models import utcnow
from jobplane.registry import JobSpec
from jobplane.store.rows import NewLogLine
from jobplane.workers import context, retries
from jobplane.workers.effects import EffectsNotCommitted

if TYPE_CHECKING:
    from dramatiq.broker import MessageProxy

logger = logging.getLogger(__name__)


def record_completion(conn: Connection, ctx: context.JobContext) -> None:
    """Record the body's result; a result the database cannot store fails the task."""
    now = utcnow()
    error = result_error(ctx.result)
    if error is not None:
        store.claims.fail_task(conn, ctx.task_id, ctx.dispatch, error=error, now=now)
    elif not store.claims.complete_task(
        conn, ctx.task_id, ctx.dispatch, result=ctx.result, now=now
    ):
        logger.warning("task %s finished but was no longer this attempt's", ctx.task_id)


def record_failure(
    conn: Connection,
    ctx: context.JobContext,
    spec: JobSpec,
    exception: BaseException,
    error: str,
) -> None:
    """Record a failed attempt: retried after its delay if it deserves a retry and has
    one left, else failed; its traceback (or the job's request) goes to the task's log."""
    now = utcnow()
    store.logs.append_logs(conn, [_failure_line(ctx, exception, now)])
    if retries.deserves_retry(spec, exception):
        task = store.tasks.get_task(conn, ctx.task_id)
        delay = retries.retry_delay(spec, exception, (task.retry_count if task else 0) + 1)
        run_after = now + timedelta(seconds=delay)
        if store.claims.retry_task(
            conn, ctx.task_id, ctx.dispatch, error=error, run_after=run_after, now=now
        ):
            if isinstance(exception, RetryRequested):
                logger.info("task %s: %s", ctx.task_id, exception)
            return
    if isinstance(exception, RetryRequested):
        logger.info("task %s: %s, but it has no retry left: failed", ctx.task_id, exception)
        error = f"{error} (no retry left)"
    store.claims.fail_task(conn, ctx.task_id, ctx.dispatch, error=error, now=now)


def record_cancelled(conn: Connection, ctx: context.JobContext, now: datetime) -> None:
    """Record a task whose body was stopped by its cancellation."""
    store.tasks.mark_cancelled(conn, ctx.task_id, ctx.dispatch, now)
    store.logs.append_logs(conn, [_line(ctx, "WARNING", "cancelled while running", now)])


def record_stale(conn: Connection, ctx: context.JobContext, now: datetime) -> None:
    """The body's ``ctx.transaction()`` found this attempt no longer the task's:
    cancelled (recorded so), or recovered and run again (this attempt records nothing)."""
    if store.tasks.cancel_requested(conn, [ctx.task_id]):
        store.tasks.mark_cancelled(conn, ctx.task_id, ctx.dispatch, now)
        line = "cancelled while running; its ctx.transaction() rolled back"
        store.logs.append_logs(conn, [_line(ctx, "WARNING", line, now)])
        return
    logger.warning(
        "task %s (dispatch %s): stale attempt, its ctx.transaction() rolled back",
        ctx.task_id,
        ctx.dispatch,
    )


def free_slot(conn: Connection, spec: JobSpec, limit: int, now: datetime) -> None:
    """This task's slot is free again: wake a task waiting for it."""
    store.concurrency.lock_job_type(conn, spec.name)
    free = limit - store.concurrency.count_running(conn, spec.name)
    store.concurrency.wake_waiting(conn, spec.name, free, now)


def result_error(result: Any) -> str | None:
    """Why ``result`` cannot be stored, or None when it can (``jobplane.stored_json``)."""
    problem = stored_json.problem(result, "result")
    return None if problem is None else f"the job's result cannot be stored as JSON: {problem}"


def _line(ctx: context.JobContext, level: str, message: str, now: datetime) -> NewLogLine:
    return NewLogLine(ctx.task_id, level, message, now)


def _failure_line(ctx: context.JobContext, exception: BaseException, now: datetime) -> NewLogLine:
    """The task log's line for a failed attempt: the traceback, or the job's request."""
    if isinstance(exception, RetryRequested):
        return _line(ctx, "WARNING", storable_text(str(exception)), now)
    trace = storable_text("".join(traceback.format_exception(exception)))
    return _line(ctx, "ERROR", trace, now)


def describe(exception: BaseException, message: MessageProxy) -> str:
    """The one-line error stored on the task."""
    if isinstance(exception, TimeLimitExceeded):
        limit_ms = message.options.get("time_limit")
        seconds = f"{limit_ms / 1000:g}" if limit_ms else "?"
        return f"timed out after {seconds} s"
    if isinstance(exception, RetryRequested | EffectsNotCommitted):
        return storable_text(str(exception))  # jobplane's words, complete
    return storable_text(f"{type(exception).__name__}: {exception}")


def storable_text(text: str) -> str:
    """``text`` as a database text column can hold it: no NUL, no lone surrogate.

    An error message is the job's own words; one the database refused would leave
    the task's failure unrecorded."""
    return text.replace("\x00", "\\x00").encode("utf-8", "backslashreplace").decode("utf-8")
