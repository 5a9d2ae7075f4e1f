"""``WorkflowHandle``: a submitted workflow, read again on demand, and waited for."""

from __future__ import annotations

import math
import time
from typing import Any

from sqlalchemy import Connection, Engine

from jobplane import store
from jobplane.domain import (
    TaskStatus,
    WorkflowFailed,
    WorkflowNotFound,
    WorkflowStatus,
)
from jobplane.library.row_handles import RowHandle
from jobplane.library.waiting import watching
from jobplane.models import utcnow
from jobplane.store.rows import TaskRow
from jobplane.store.workflows import WorkflowRow, workflow_result

#: Longest a waiter sleeps between two reads of the workflow: a failure may end it at
#: any step, and only one of its end steps is watched.
_RECHECK_S = 1.0


class WorkflowHandle(RowHandle[WorkflowRow]):
    """A submitted workflow: ``.id`` now, its state on demand.

    ``engine``: the database it is in (default: ``JOBPLANE_DATABASE_URL``'s).
    ``.status`` is that of the last read (the first use reads it); ``wait()`` waits
    until it ended. ``steps()`` reads its steps, in the order they appear in it.
    """

    @property
    def status(self) -> str:
        """``running``, ``completed``, ``failed`` or ``cancelled``."""
        return self._last_read().status

    @property
    def error(self) -> str | None:
        """Why it failed or was cancelled: the step that did, and its error."""
        return self._last_read().error

    def refresh(self) -> WorkflowHandle:
        self._read()
        return self

    def steps(self) -> list[TaskRow]:
        """Its steps' tasks, in the order they appear in the workflow."""
        with self.engine.connect() as conn, self._in_schema(conn):
            return store.workflows.workflow_steps(conn, self.id)

    def cancel(self) -> WorkflowHandle:
        """Cancel every step not finished yet (running ones once their bodies stop)."""
        with self.engine.begin() as conn, self._in_schema(conn):
            self._row = store.workflows.cancel_workflow(conn, self.id, utcnow())
        return self

    def retry(self) -> WorkflowHandle:
        """Run a failed or cancelled workflow again from the steps that did not complete."""
        with self.engine.begin() as conn, self._in_schema(conn):
            self._row = store.workflows.retry_workflow(conn, self.id, utcnow())
        return self

    def wait(self, timeout: float | None = None) -> Any:
        """The workflow's result once it completed: that of its last step (a chain's),
        or the list of its members' (a group's). Waits at most ``timeout`` s.

        Raises ``WorkflowFailed`` (failed or cancelled; ``error`` names the step),
        ``TimeoutError`` if it is still running then, ``WorkflowNotFound``.
        """
        deadline = math.inf if timeout is None else time.monotonic() + timeout
        while True:
            row = self._read()
            if WorkflowStatus(row.status).is_terminal:
                return self._outcome(row)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"workflow {self.id} is still running after {timeout} s")
            self._pause(row, min(remaining, _RECHECK_S))

    def _pause(self, row: WorkflowRow, seconds: float) -> None:
        """Until one of its end steps not finished yet finishes, or ``seconds`` passed."""
        with self.engine.connect() as conn, self._in_schema(conn):
            end = store.workflows.unfinished_end_step(conn, row.shape)
        if end is None:
            return
        with watching(self.engine, end) as watch:
            with self.engine.connect() as conn, self._in_schema(conn):
                task = store.tasks.get_task(conn, end)
            if task is not None and not TaskStatus(task.status).is_terminal:
                watch.pause(seconds)

    def _outcome(self, row: WorkflowRow) -> Any:
        if row.status == WorkflowStatus.COMPLETED:
            with self.engine.connect() as conn, self._in_schema(conn):
                return workflow_result(conn, row.shape)
        verb = "failed" if row.status == WorkflowStatus.FAILED else "was cancelled"
        raise WorkflowFailed(
            f"workflow {self.id} {verb}: {row.error}",
            workflow_id=self.id,
            status=row.status,
            error=row.error,
        )

    def _fetch(self, conn: Connection) -> WorkflowRow | None:
        return store.workflows.get_workflow(conn, self.id)

    def _missing(self) -> Exception:
        return WorkflowNotFound(f"no workflow with id {self.id!r}")


def workflow(workflow_id: str, *, engine: Engine | None = None) -> WorkflowHandle:
    """A handle on the workflow ``workflow_id`` (nothing is read until it is used)."""
    return WorkflowHandle(workflow_id, engine=engine)
