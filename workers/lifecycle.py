"""The middleware that ties a Dramatiq message to its task row.

Before the body: claim the row with one conditional UPDATE (after waiting for a slot
of the job type's concurrency limit, if it has one), or drop the message saying why.
After it: record the result, the cancellation, or the error with a retry if one is
left. Meanwhile the task monitor keeps the row's heartbeat fresh and watches for
cancellation. On a graceful stop, tasks still running go back to pending.

When the database fails (a restart, a failover, a full pool, a locked SQLite file):
- no claim, no run, no ack: a claim waits the outage out; if the worker stops first,
  the body does not run and the message goes back to the broker (``give_back``);
- outcomes are written, whatever happens: the outcome's write is retried until it
  commits, and the heartbeat goes on until then, so a body that succeeded is never
  recovered as "worker lost";
- a result the database cannot store fails the task once, saying why.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable
from concurrent.futures import Future
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar

from dramatiq.middleware import Middleware, SkipMessage
from sqlalchemy import Connection, Engine

from jobplane import registry, store
from jobplane.broker.consumer_wakeup import ack_after, flush_acks, give_back
from jobplane.db import transaction
from jobplane.domain import StaleAttempt, TaskCancelled
from jobplane.models import utcnow
from jobplane.outages import is_transient, through_outages
from jobplane.registry import JobSpec
from jobplane.settings import Settings
from jobplane.store.rows import ClaimedTask
from jobplane.workers import context, outcomes
from jobplane.workers.effects import first_line
from jobplane.workers.monitor import Run, TaskMonitor
from jobplane.workers.writes import DISCONNECT_RETRIES, TaskWrites

if TYPE_CHECKING:
    from dramatiq import Broker, Worker
    from dramatiq.broker import MessageProxy

logger = logging.getLogger(__name__)

T = TypeVar("T")


class TaskLifecycle(Middleware):
    """Claims, runs and finishes platform tasks.

    Parameters:
      engine_factory: builds this process's engine, called once, lazily, after the fork
        (Dramatiq's CLI imports the broker module in every worker process).
      settings: heartbeat and cancellation intervals, concurrency overrides.
    """

    def __init__(self, *, engine_factory: Callable[[], Engine], settings: Settings) -> None:
        self.engine_factory = engine_factory
        self.settings = settings
        self.worker_name = f"{socket.gethostname()}:{os.getpid()}"
        self._engine: Engine | None = None
        self._writes: TaskWrites | None = None
        self._writes_lock = threading.Lock()
        self._monitor: TaskMonitor | None = None
        #: Set as the worker starts to stop: outage retries of claims give up.
        self._stopping = threading.Event()

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            self._engine = self.engine_factory()
        return self._engine

    @property
    def writes(self) -> TaskWrites:
        """The group-committed claims and completions, made on first use."""
        with self._writes_lock:
            if self._writes is None:
                self._writes = TaskWrites(self.engine, lambda: self.worker_name)
            return self._writes

    # -- process and worker -------------------------------------------------------

    def after_process_boot(self, broker: Broker) -> None:
        self.worker_name = f"{socket.gethostname()}:{os.getpid()}"
        handler = context.TaskLogHandler()
        handler.setFormatter(logging.Formatter("%(name)s: %(message)s"))
        logging.getLogger().addHandler(handler)

    def after_worker_boot(self, broker: Broker, worker: Worker) -> None:
        self._monitor = TaskMonitor(
            self.engine,
            worker_name=self.worker_name,
            heartbeat_interval=self.settings.heartbeat_interval,
            cancel_interval=self.settings.cancel_check_interval,
        )
        self._monitor.start()

    def before_worker_shutdown(self, broker: Broker, worker: Worker) -> None:
        """Claims waiting out a database outage give up: their messages go back."""
        self._stopping.set()
        if self._writes is not None:
            self._writes.stop_claiming()

    def after_worker_shutdown(self, broker: Broker, worker: Worker) -> None:
        """The grace period is over: what still runs goes back to pending, uncounted."""
        with self._writes_lock:
            # First the outcomes already queued: a finished body is not put back.
            if self._writes is not None:
                self._writes.close()
                self._writes = None
        flush_acks(broker)  # messages given back after their consumer closed
        if self._monitor is not None:
            self._monitor.stop()
            held = self._monitor.held()
            if held:
                with self.engine.begin() as conn:
                    released = store.claims.release_unfinished(conn, held, utcnow())
                for task_id in released:
                    logger.warning(
                        "stopping: task %s did not finish in time; pending again", task_id
                    )

    # -- one message --------------------------------------------------------------

    def before_process_message(self, broker: Broker, message: MessageProxy) -> None:
        broker.get_actor(message.actor_name)  # an unknown actor fails before any claim
        spec = registry.get_job(message.actor_name)
        task_id, dispatch = message.kwargs["task_id"], message.kwargs["dispatch"]
        try:
            row, reason = self._claim(spec, task_id, dispatch)
        except Exception as error:
            # No claim, no run, no ack: the body must not run, and the message must
            # stay on the broker to be delivered again.
            give_back(broker, message)
            logger.warning(
                "could not claim task %s (dispatch %s): %s; its message goes back",
                task_id,
                dispatch,
                error,
            )
            raise SkipMessage(f"claim failed: {error}") from error
        if row is None:
            logger.info("not running task %s (dispatch %s): %s", task_id, dispatch, reason)
            raise SkipMessage(reason)
        monitor = self._monitor
        run: Run = (task_id, dispatch)
        ctx = context.JobContext(
            task_id=row.id,
            task_type=row.type,
            params=row.params,
            attempt=row.attempts,
            dispatch=dispatch,
            engine=self.engine,
            settings=self.settings,
            follow_ups=row.follow_ups,
            on_body_end=(lambda: monitor.end_body(run)) if monitor else (lambda: None),
        )
        context.bind(ctx)
        if monitor is not None:
            monitor.hold(run)

    def _claim(
        self, spec: JobSpec, task_id: str, dispatch: int
    ) -> tuple[ClaimedTask | None, str | None]:
        """The claimed row, or None and why not (waiting for a slot, stale, gone…)."""
        limit = spec.concurrency_limit(self.settings.concurrency)
        if limit is not None:
            return self._through_outages(
                lambda conn: self._claim_or_park(conn, spec, limit, task_id, dispatch),
                until=self._stopping,
                what=f"claim of task {task_id}",
            )
        row = self.writes.claim(task_id, dispatch)
        if row is not None:
            return row, None
        try:
            return None, self._transaction(
                lambda conn: store.claims.why_not_claimable(conn, task_id, dispatch, utcnow())
            )
        except Exception as error:  # the claim's answer stands; only the reason is lost
            return None, f"not claimable (could not read why: {error})"

    def _claim_or_park(
        self, conn: Connection, spec: JobSpec, limit: int, task_id: str, dispatch: int
    ) -> tuple[ClaimedTask | None, str | None]:
        """A claim under a concurrency limit: park the task if every slot is taken."""
        now = utcnow()
        store.concurrency.lock_job_type(conn, spec.name)  # held until commit: one claim at a time
        if store.concurrency.count_running(conn, spec.name) >= limit:
            if store.concurrency.park_task(conn, task_id, dispatch, now):
                return None, f"waiting for one of the {limit} slots of {spec.name}"
            return None, store.claims.why_not_claimable(conn, task_id, dispatch, now)
        row = store.claims.claim_task(conn, task_id, dispatch, worker=self.worker_name, now=now)
        return row, None if row else store.claims.why_not_claimable(conn, task_id, dispatch, now)

    def after_process_message(
        self,
        broker: Broker,
        message: MessageProxy,
        *,
        result: Any = None,
        exception: BaseException | None = None,
    ) -> None:
        ctx = context.bound()
        if ctx is None:
            return  # never claimed (unknown actor)
        context.bind(None)
        ctx.on_body_end()
        self._flush_last(ctx)
        try:
            self._finish(broker, ctx, exception, message)
        except Exception:
            # The outage outlasted the worker's stop, or the database refused the
            # write: the row stays running and, its heartbeat stopped, is recovered.
            self._release(ctx)
            logger.exception("could not record the outcome of task %s", ctx.task_id)
        finally:
            if ctx.effects is not None:
                ctx.effects.discard()  # never left open, whatever happened
                self._flush_last(ctx)  # what waited for SQLite's lock, if anything

    def _flush_last(self, ctx: context.JobContext) -> None:
        """Write the body's last progress and log lines."""
        try:
            ctx.flush()
        except Exception as error:  # progress and logs are not the outcome: go on
            logger.warning("could not write the last progress of task %s: %s", ctx.task_id, error)

    def _finish(
        self,
        broker: Broker,
        ctx: context.JobContext,
        exception: BaseException | None,
        message: MessageProxy,
    ) -> None:
        spec = registry.get_job(ctx.task_type)
        limit = spec.concurrency_limit(self.settings.concurrency)
        if ctx.effects is not None:
            settled, exception = self._settle_effects(ctx, spec, limit, exception)
            if settled:
                self._release(ctx)
                return
        if exception is None and limit is None and outcomes.result_error(ctx.result) is None:
            # The common case, committed together with other threads' completions (and
            # with their follow-ups: a workflow's next step, a callback).
            completion = self.writes.complete(
                ctx.task_id, ctx.dispatch, ctx.result, follow_ups=ctx.follow_ups
            )
            completion.add_done_callback(partial(self._completed, ctx))
            if not ack_after(broker, message, completion):
                completion.result()  # the message is acked as this returns
            return
        now = utcnow()

        def record(conn: Connection) -> None:
            if exception is None:
                outcomes.record_completion(conn, ctx)
            elif isinstance(exception, TaskCancelled):
                outcomes.record_cancelled(conn, ctx, now)
            elif isinstance(exception, StaleAttempt):
                outcomes.record_stale(conn, ctx, now)
            else:
                outcomes.record_failure(
                    conn, ctx, spec, exception, outcomes.describe(exception, message)
                )
            if limit is not None:
                outcomes.free_slot(conn, spec, limit, now)

        # Every write in ``record`` is guarded by the run's dispatch: safe to repeat.
        self._through_outages(
            record, until=self.writes.completions_stopped, what=f"outcome of task {ctx.task_id}"
        )
        self._release(ctx)

    def _settle_effects(
        self,
        ctx: context.JobContext,
        spec: JobSpec,
        limit: int | None,
        exception: BaseException | None,
    ) -> tuple[bool, BaseException | None]:
        """The body's ``ctx.transaction()``, committed with its completion if it succeeded
        (``EffectsTransaction.settle``)."""
        assert ctx.effects is not None
        return ctx.effects.settle(
            exception,
            storable=outcomes.result_error(ctx.result) is None,
            complete=lambda conn: self._complete_with_effects(conn, ctx, spec, limit),
        )

    def _complete_with_effects(
        self, conn: Connection, ctx: context.JobContext, spec: JobSpec, limit: int | None
    ) -> bool:
        """The completion, on the connection of the body's ``ctx.transaction()``."""
        now = utcnow()
        completed = store.claims.complete_task(
            conn, ctx.task_id, ctx.dispatch, result=ctx.result, now=now
        )
        if completed and limit is not None:
            outcomes.free_slot(conn, spec, limit, now)
        return completed

    def _completed(self, ctx: context.JobContext, completion: Future[bool]) -> None:
        """A group-committed completion is settled (on the writer thread)."""
        error = completion.exception()
        # A transient error here is an outage that outlasted the worker's stop; any other
        # is the database refusing the result itself: fail the task, saying why.
        if error is not None and not is_transient(error):
            reason = f"the job's result could not be stored: {first_line(error)}"
            try:
                self._transaction(
                    lambda conn: store.claims.fail_task(
                        conn, ctx.task_id, ctx.dispatch, error=reason[:2000], now=utcnow()
                    )
                )
            except Exception:
                logger.exception("could not record the outcome of task %s", ctx.task_id)
        elif error is not None:
            logger.error("could not record the outcome of task %s", ctx.task_id, exc_info=error)
        elif not completion.result():
            logger.warning("task %s finished but was no longer this attempt's", ctx.task_id)
        self._release(ctx)

    def _release(self, ctx: context.JobContext) -> None:
        if self._monitor is not None:
            self._monitor.release((ctx.task_id, ctx.dispatch))

    def _through_outages(
        self, work: Callable[[Connection], T], *, until: threading.Event, what: str
    ) -> T:
        return through_outages(lambda: self._transaction(work), until=until, what=what)

    def _transaction(self, work: Callable[[Connection], T]) -> T:
        # Claims and finishes are guarded UPDATEs, safe to repeat: without the retry, a
        # dead pooled connection (after a database restart) would cost a round of
        # backoff for nothing.
        return transaction(self.engine, work, disconnect_retries=DISCONNECT_RETRIES)
