"""The job context: what a running job body can ask about itself and report.

The lifecycle middleware sets one per worker thread around each job body.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine

from app import store
from app.models import utcnow

#: Progress is written at most this often (seconds); the final value always is.
PROGRESS_INTERVAL = 0.25

_local = threading.local()


class NotInAJob(RuntimeError):
    """current_job() was called outside a job body."""


def current_job() -> JobContext:
    """The context of the job running in this thread."""
    ctx: JobContext | None = getattr(_local, "context", None)
    if ctx is None:
        raise NotInAJob("current_job() is only available inside a job body")
    return ctx


def bind(ctx: JobContext | None) -> None:
    _local.context = ctx


@dataclass
class JobContext:
    """What a job knows about itself: id, params, attempt number; progress and logs."""

    task_id: str
    task_type: str
    params: dict[str, Any]
    attempt: int
    dispatch: int
    engine: Engine = field(repr=False)
    #: What the body returned, stored as the task's result.
    result: Any = field(default=None, repr=False)
    clock: Callable[[], float] = field(default=time.monotonic, repr=False)
    _last_write: float = field(default=float("-inf"), repr=False)
    _pending: tuple[int, int] | None = field(default=None, repr=False)

    @property
    def log(self) -> logging.LoggerAdapter[logging.Logger]:
        """A logger whose lines are stored in the task's log."""
        return logging.LoggerAdapter(logging.getLogger("jobplane.job"), {"task_id": self.task_id})

    def progress(self, current: int, total: int) -> None:
        """Report ``current`` of ``total`` done; written at most a few times a second."""
        self._pending = (int(current), int(total))
        now = self.clock()
        if current >= total or now - self._last_write >= PROGRESS_INTERVAL:
            self.flush_progress()
            self._last_write = now

    def flush_progress(self) -> None:
        """Write the latest progress if it has not been written yet."""
        if self._pending is None:
            return
        current, total = self._pending
        self._pending = None
        with self.engine.begin() as conn:
            store.record_progress(conn, self.task_id, self.dispatch, current, total)

    def write_log(self, level: str, message: str) -> None:
        with self.engine.begin() as conn:
            store.append_logs(
                conn,
                [
                    {
                        "task_id": self.task_id,
                        "level": level,
                        "message": message,
                        "created_at": utcnow(),
                    }
                ],
            )


class TaskLogHandler(logging.Handler):
    """Stores log records emitted inside a job body in that task's log."""

    def emit(self, record: logging.LogRecord) -> None:
        ctx: JobContext | None = getattr(_local, "context", None)
        # The flag stops the database driver's own logging from recursing here.
        if ctx is None or getattr(_local, "emitting", False):
            return
        _local.emitting = True
        try:
            ctx.write_log(record.levelname, self.format(record))
        except Exception:
            self.handleError(record)
        finally:
            _local.emitting = False
