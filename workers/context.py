"""The job context: what a running job body can ask about itself, report and ask for.

The lifecycle middleware binds one to the worker thread around each job body.
Progress and log lines are buffered and written a few times a second at most; the
last of each is always written when the body ends. A body may also write to the
database with its completion (``transaction``), ask for a retry (``retry``) and
enqueue follow-up tasks (``enqueue``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, NoReturn

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from jobplane import store
from jobplane.domain import RetryRequested, TaskCancelled
from jobplane.library.enqueue import enqueue
from jobplane.library.jobs import Job
from jobplane.models import utcnow
from jobplane.outages import is_transient
from jobplane.settings import Settings
from jobplane.store.rows import NewLogLine
from jobplane.workers.effects import EffectsTransaction, TransactionAlreadyUsed

#: Progress and logs are written at most this often (seconds) while a job runs.
FLUSH_INTERVAL = 0.25
#: A job's log buffer is written at once when it holds this many lines.
MAX_BUFFERED_LINES = 100
#: The longest delay ``retry`` accepts, in seconds (a year).
MAX_RETRY_DELAY = 366 * 24 * 3600

logger = logging.getLogger(__name__)

_local = threading.local()


class NotInAJob(RuntimeError):
    """current_job() was called outside a job body."""


def current_job() -> JobContext:
    """The context of the job running in this thread."""
    ctx: JobContext | None = getattr(_local, "context", None)
    if ctx is None:
        raise NotInAJob("current_job() is only available inside a job body")
    return ctx


def bound() -> JobContext | None:
    """The context bound to this thread, if any."""
    return getattr(_local, "context", None)


def bind(ctx: JobContext | None) -> None:
    _local.context = ctx


@dataclass
class JobContext:
    """What a job knows about itself: id, params, attempt number; progress, logs, cancel."""

    task_id: str
    task_type: str
    params: dict[str, Any]
    attempt: int
    dispatch: int
    engine: Engine = field(repr=False)
    #: The worker's settings: ``cancelled`` reads the database at most every
    #: ``cancel_check_interval`` seconds; built-in jobs read theirs (the retention).
    settings: Settings = field(repr=False)
    #: Whether the task's end has follow-ups to write with its outcome (a workflow's
    #: next step, a callback): its completion is then not group-committed.
    follow_ups: bool = field(default=False, repr=False)
    #: Called when the body ends, so the cancellation monitor stops targeting its thread.
    on_body_end: Callable[[], None] = field(default=lambda: None, repr=False)
    clock: Callable[[], float] = field(default=time.monotonic, repr=False)
    #: What the body returned, stored as the task's result.
    result: Any = field(default=None, repr=False)
    #: The body's ``transaction()``, once it asked for one.
    effects: EffectsTransaction | None = field(default=None, repr=False)
    _progress: tuple[int, int] | None = field(default=None, repr=False)
    _lines: list[NewLogLine] = field(default_factory=list, repr=False)
    _last_flush: float = field(default=float("-inf"), repr=False)
    _cancel_checked: float = field(default=float("-inf"), repr=False)
    _cancelled: bool = field(default=False, repr=False)

    @property
    def fence_token(self) -> int:
        """This run's dispatch number, a fencing token for systems outside the database.

        Every new run of the task (a retry, a recovery after a lost worker, an admin's
        retry) has a higher one. A system that remembers the highest token it saw for
        the task and refuses writes carrying a lower one never takes a write from a
        stale attempt that still runs somewhere."""
        return self.dispatch

    def transaction(self) -> AbstractContextManager[Session]:
        """``with ctx.transaction() as session:`` writes that commit with the completion.

        A SQLAlchemy ``Session`` on the worker's database. Its writes are committed
        together with the task's completion, once the body has returned, so they
        happen exactly once: an attempt that fails, dies or is no longer the task's
        leaves none of them. The block's end flushes (errors of the writes surface
        there) and raises ``jobplane.StaleAttempt``, rolling back, when this attempt
        was cancelled or recovered meanwhile. Once per body
        (``TransactionAlreadyUsed`` after); the session is for the block only.
        """
        if self.effects is not None:
            raise TransactionAlreadyUsed()
        self.effects = EffectsTransaction(
            self.engine,
            schema=self.settings.db_schema,
            task_id=self.task_id,
            dispatch=self.dispatch,
        )
        return self.effects.block()

    def retry(self, delay: float = 60.0, reason: str = "") -> NoReturn:
        """End this attempt and run the task again after ``delay`` seconds (default 60).

        Raises ``jobplane.RetryRequested``: the attempt counts as failed against the
        task's retries, and the next one is due after exactly ``delay`` s (no backoff);
        with no retry left, the task fails, saying it was a requested retry and why.
        """
        if not isinstance(delay, int | float) or not 0 <= delay <= MAX_RETRY_DELAY:  # NaN too
            raise ValueError(
                f"ctx.retry: delay must be between 0 and {MAX_RETRY_DELAY} seconds, not {delay!r}"
            )
        raise RetryRequested(delay=float(delay), reason=str(reason))

    def enqueue(
        self, type: str | Job[..., Any], params: Mapping[str, Any] | None = None, **options: Any
    ) -> str:
        """Enqueue a follow-up task (``jobplane.enqueue``'s options); its id.

        Inside ``with ctx.transaction()``: in that transaction, so it is enqueued once,
        with the completion, or not at all. Elsewhere: in a short transaction of its
        own, once per attempt that gets there (pass an ``idempotency_key`` to make
        retries of this task enqueue it once).
        """
        if self.effects is not None and self.effects.in_block:
            return self.effects.enqueue(type, params, **options)
        with self.engine.begin() as conn:
            return enqueue(conn, type, params, **options)

    @property
    def log(self) -> logging.LoggerAdapter[logging.Logger]:
        """A logger whose lines are stored in the task's log (as any logging call is)."""
        return logging.LoggerAdapter(logging.getLogger("jobplane.job"), {"task_id": self.task_id})

    def progress(self, current: int, total: int) -> None:
        """Report ``current`` of ``total`` done."""
        self._progress = (int(current), int(total))
        self._maybe_flush(force=current >= total)

    def write_log(self, level: str, message: str) -> None:
        self._lines.append(NewLogLine(self.task_id, level, message, utcnow()))
        self._maybe_flush(force=len(self._lines) >= MAX_BUFFERED_LINES)

    @property
    def cancelled(self) -> bool:
        """Whether an admin asked to cancel this task (read from the database at most
        every ``JOBPLANE_CANCEL_CHECK_INTERVAL`` seconds, 0.5 by default)."""
        now = self.clock()
        interval = self.settings.cancel_check_interval
        if not self._cancelled and now - self._cancel_checked >= interval:
            self._cancel_checked = now
            try:
                with self.engine.begin() as conn:
                    self._cancelled = bool(store.tasks.cancel_requested(conn, [self.task_id]))
            except Exception as error:
                if not is_transient(error):
                    raise
                return False  # unknown until the database is back: carry on
        return self._cancelled

    def check_cancelled(self) -> None:
        """Raise ``TaskCancelled`` if the task was cancelled: a clean place to stop."""
        if self.cancelled:
            raise TaskCancelled(f"task {self.task_id} was cancelled")

    def _maybe_flush(self, *, force: bool) -> None:
        now = self.clock()
        if force or now - self._last_flush >= FLUSH_INTERVAL:
            self._last_flush = now
            try:
                self.flush()
            except Exception as error:
                if not is_transient(error):
                    raise
                # Progress is not the outcome: a database outage must not fail the
                # body. What is buffered is written at the next flush.
                logger.warning("task %s: progress not written yet: %s", self.task_id, error)

    def flush(self) -> None:
        """Write buffered progress and log lines, in one transaction.

        If the write fails, they stay buffered (a newer progress replaces the older).
        While the body's ``transaction()`` holds SQLite's write lock they stay buffered
        too: another connection's write would wait for that lock, held by this thread."""
        progress, lines = self._progress, list(self._lines)
        if progress is None and not lines:
            return
        if self.effects is not None and self.effects.holds_write_lock:
            return
        with self.engine.begin() as conn:
            if progress is not None:
                store.claims.record_progress(conn, self.task_id, self.dispatch, *progress)
            store.logs.append_logs(conn, lines)
        if self._progress == progress:
            self._progress = None
        del self._lines[: len(lines)]


class TaskLogHandler(logging.Handler):
    """Stores log records emitted inside a job body in that task's log."""

    def emit(self, record: logging.LogRecord) -> None:
        ctx = bound()
        # The flag stops the database driver's own logging from recursing here;
        # Dramatiq's own lines about the message repeat what the lifecycle logs.
        if ctx is None or getattr(_local, "emitting", False) or record.name.startswith("dramatiq"):
            return
        _local.emitting = True
        try:
            ctx.write_log(record.levelname, self.format(record))
        except Exception:
            self.handleError(record)
        finally:
            _local.emitting = False
