"""``TaskHandle``: a submitted task, read again on demand, and waited for."""

from __future__ import annotations

import math
import time
from typing import Any

from sqlalchemy import Connection, Engine

from jobplane import store
from jobplane.domain import TaskNotFound, TaskStatus, outcome
from jobplane.library.row_handles import RowHandle
from jobplane.library.waiting import watching
from jobplane.models import utcnow
from jobplane.store.rows import TaskRow


class TaskHandle(RowHandle[TaskRow]):
    """A submitted task: ``.id`` now, its state on demand (Celery's ``AsyncResult``).

    ``engine``: the database the task is in (default: ``JOBPLANE_DATABASE_URL``'s,
    ``jobplane.library.engine.default_engine``). ``.status``, ``.result`` and ``.error``
    are those of the last read (the first use reads the row); ``refresh()`` reads it
    again, ``wait()`` until the task finished. A handle may be shared between threads.
    """

    @property
    def status(self) -> str:
        """``pending``, ``running``, ``completed``, ``failed``, ``cancelled`` or ``skipped``."""
        return self._last_read().status

    @property
    def result(self) -> Any:
        """What the job returned (None until it completed)."""
        return self._last_read().result

    @property
    def error(self) -> str | None:
        """Why its last attempt failed (or why a scheduled run was skipped)."""
        return self._last_read().error

    def refresh(self) -> TaskHandle:
        """Read the task again; ``TaskNotFound`` if there is no such task."""
        self._read()
        return self

    def cancel(self) -> TaskHandle:
        """Cancel a pending task now, or ask a running one's worker to stop it (its status
        then stays ``running`` until the body stopped); as the admin API's cancel.

        ``jobplane.InvalidTransition`` if it already finished, ``TaskNotFound``."""
        with self.engine.begin() as conn, self._in_schema(conn):
            self._row = store.tasks.cancel_task(conn, self.id, utcnow())
        return self

    def wait(self, timeout: float | None = None) -> Any:
        """The task's result once it completed; waits at most ``timeout`` s (None: no limit).

        Raises ``TaskFailed`` (its ``error`` says why; also for a scheduled run that was
        skipped, which has no result), ``TaskCancelled``, ``TimeoutError`` if it is not
        finished in time (it keeps running), ``TaskNotFound``. On PostgreSQL the finishing
        commit wakes the waiter; on SQLite it polls (20 ms, doubling up to 1 s).
        """
        deadline = math.inf if timeout is None else time.monotonic() + timeout
        row = self._read()
        if not TaskStatus(row.status).is_terminal:  # else no need to listen
            row = self._finished(deadline, timeout)
        return outcome(row.id, row.status, row.result, row.error)

    def _finished(self, deadline: float, timeout: float | None) -> TaskRow:
        """The row once terminal, read until ``deadline`` (monotonic s) on a watch."""
        with watching(self.engine, self.id) as watch:
            while True:
                row = self._read()  # after the watch started: no finish goes unseen
                if TaskStatus(row.status).is_terminal:
                    return row
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"task {self.id} is still {row.status} after {timeout} s")
                watch.pause(remaining)

    def _fetch(self, conn: Connection) -> TaskRow | None:
        return store.tasks.get_task(conn, self.id)

    def _missing(self) -> Exception:
        return TaskNotFound(f"no task with id {self.id!r}")


def task(task_id: str, *, engine: Engine | None = None) -> TaskHandle:
    """A handle on the task ``task_id`` (nothing is read until it is used)."""
    return TaskHandle(task_id, engine=engine)
