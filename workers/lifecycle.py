"""The middleware that ties a Dramatiq message to its task row.

Before the body: claim the row with one conditional UPDATE, or drop the message
(saying why). After it: record the result, or the error with a retry if one is left.
The heartbeat keeps a running row fresh meanwhile.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import traceback
from collections.abc import Callable
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from dramatiq.middleware import Middleware, SkipMessage, TimeLimitExceeded
from sqlalchemy import Engine

from app import registry, store
from app.models import utcnow
from workers import context, retries
from workers.heartbeat import Heartbeat

if TYPE_CHECKING:
    from dramatiq import Broker, Worker
    from dramatiq.broker import MessageProxy

logger = logging.getLogger(__name__)


class TaskLifecycle(Middleware):
    """Claims, runs and finishes platform tasks.

    Parameters:
      engine_factory: builds this process's engine, called once per process after boot
        (Dramatiq's CLI imports the broker module in every worker process).
      heartbeat_interval: seconds between heartbeats of running tasks.
    """

    def __init__(self, *, engine_factory: Callable[[], Engine], heartbeat_interval: float) -> None:
        self.engine_factory = engine_factory
        self.heartbeat_interval = heartbeat_interval
        self.worker_name = f"{socket.gethostname()}:{os.getpid()}"
        self._engine: Engine | None = None
        self._heartbeat: Heartbeat | None = None

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            self._engine = self.engine_factory()
        return self._engine

    def after_process_boot(self, broker: Broker) -> None:
        self.worker_name = f"{socket.gethostname()}:{os.getpid()}"
        handler = context.TaskLogHandler()
        handler.setFormatter(logging.Formatter("%(name)s: %(message)s"))
        logging.getLogger().addHandler(handler)

    def after_worker_boot(self, broker: Broker, worker: Worker) -> None:
        self._heartbeat = Heartbeat(self.engine, interval=self.heartbeat_interval)
        self._heartbeat.start()

    def before_worker_shutdown(self, broker: Broker, worker: Worker) -> None:
        if self._heartbeat is not None:
            self._heartbeat.stop()

    def before_process_message(self, broker: Broker, message: MessageProxy) -> None:
        broker.get_actor(message.actor_name)  # an unknown actor fails before any claim
        task_id, dispatch = message.kwargs["task_id"], message.kwargs["dispatch"]
        now = utcnow()
        with self.engine.begin() as conn:
            row = store.claim_task(conn, task_id, dispatch, worker=self.worker_name, now=now)
            reason = None if row else store.why_not_claimable(conn, task_id, dispatch, now)
        if row is None:
            logger.info("dropping message for task %s (dispatch %s): %s", task_id, dispatch, reason)
            raise SkipMessage(reason)
        ctx = context.JobContext(
            task_id=row.id,
            task_type=row.type,
            params=row.params,
            attempt=row.attempts,
            dispatch=dispatch,
            engine=self.engine,
        )
        context.bind(ctx)
        if self._heartbeat is not None:
            self._heartbeat.hold(task_id)

    def after_process_message(
        self,
        broker: Broker,
        message: MessageProxy,
        *,
        result: Any = None,
        exception: BaseException | None = None,
    ) -> None:
        ctx = getattr(context._local, "context", None)
        if ctx is None:
            return  # never claimed (unknown actor)
        context.bind(None)
        if self._heartbeat is not None:
            self._heartbeat.release(ctx.task_id)
        try:
            ctx.flush_progress()
            if exception is None:
                self._complete(ctx, ctx.result)
            else:
                self._fail(ctx, exception, message)
        except Exception:
            # The row stays running; its heartbeat stops, and the sweeper recovers it.
            logger.exception("could not record the outcome of task %s", ctx.task_id)

    def _complete(self, ctx: context.JobContext, result: Any) -> None:
        try:
            json.dumps(result)
        except (TypeError, ValueError) as error:
            with self.engine.begin() as conn:
                message = f"the job's result is not JSON-serializable: {error}"
                store.fail_task(conn, ctx.task_id, ctx.dispatch, error=message, now=utcnow())
            return
        with self.engine.begin() as conn:
            if not store.complete_task(
                conn, ctx.task_id, ctx.dispatch, result=result, now=utcnow()
            ):
                logger.warning("task %s finished but was no longer this attempt's", ctx.task_id)

    def _fail(
        self, ctx: context.JobContext, exception: BaseException, message: MessageProxy
    ) -> None:
        spec = registry.get_job(ctx.task_type)
        error = describe(exception, message)
        now = utcnow()
        trace = "".join(traceback.format_exception(exception))
        with self.engine.begin() as conn:
            store.append_logs(
                conn,
                [{"task_id": ctx.task_id, "level": "ERROR", "message": trace, "created_at": now}],
            )
            retried = False
            if retries.deserves_retry(spec, exception):
                task = store.get_task(conn, ctx.task_id)
                delay = retries.backoff_seconds(spec, (task.retry_count if task else 0) + 1)
                retried = store.retry_task(
                    conn,
                    ctx.task_id,
                    ctx.dispatch,
                    error=error,
                    run_after=now + timedelta(seconds=delay),
                    now=now,
                )
            if not retried:
                store.fail_task(conn, ctx.task_id, ctx.dispatch, error=error, now=now)


def describe(exception: BaseException, message: MessageProxy) -> str:
    """The one-line error stored on the task."""
    if isinstance(exception, TimeLimitExceeded):
        limit_ms = message.options.get("time_limit")
        seconds = f"{limit_ms / 1000:g}" if limit_ms else "?"
        return f"timed out after {seconds} s"
    return f"{type(exception).__name__}: {exception}"
