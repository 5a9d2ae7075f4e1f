"""Watching the runs a worker process holds: heartbeats and cancellations.

One thread per process. Every ``cancel_interval`` it asks the database whether any
task whose body runs here was cancelled, and raises ``TaskCancelled`` in that body's
thread (the way Dramatiq's time limit interrupts a thread); every ``heartbeat_interval``,
from its first pass on, it reports the worker in (``jobplane_workers``) and refreshes
``heartbeat_at`` of every run it holds with one UPDATE. Maintenance recovers running
tasks whose heartbeat stops.

A run is a (task id, dispatch) pair: a stale run of a task (an older dispatch, still
running here after the task was recovered and published again) and the live run of
the same task are two entries, and the end of one leaves the other's watch alone. A
run is held from its claim until its outcome is committed, so the heartbeat covers the
outcome's write too (also while that write waits out a database outage); the
cancellation watch ends with the body.
"""

from __future__ import annotations

import logging
import threading
import time

from dramatiq.threading import raise_thread_exception
from sqlalchemy import Engine

from jobplane import store
from jobplane.domain import TaskCancelled
from jobplane.models import utcnow

logger = logging.getLogger(__name__)

Run = tuple[str, int]  #: task id, dispatch


class TaskMonitor(threading.Thread):
    """Heartbeats and cancellation checks for the runs this process holds."""

    def __init__(
        self,
        engine: Engine,
        *,
        worker_name: str,
        heartbeat_interval: float,
        cancel_interval: float,
    ) -> None:
        super().__init__(name="jobplane-monitor", daemon=True)
        self.engine = engine
        self.worker_name = worker_name
        self.heartbeat_interval = heartbeat_interval
        self.cancel_interval = cancel_interval
        self._held: set[Run] = set()
        #: The thread of each run whose body still runs (the target of a cancellation).
        self._bodies: dict[Run, int] = {}
        self._interrupted: set[Run] = set()
        self._lock = threading.Lock()
        self._stopped = threading.Event()

    def hold(self, run: Run) -> None:
        """Beat for ``run`` and watch it for cancellation (its body runs in this thread)."""
        with self._lock:
            self._held.add(run)
            self._bodies[run] = threading.get_ident()

    def end_body(self, run: Run) -> None:
        """``run``'s body is over: no more interrupts; the heartbeat goes on."""
        while True:
            try:
                with self._lock:
                    self._bodies.pop(run, None)
                    self._interrupted.discard(run)
                return
            except TaskCancelled:
                continue  # raised just before the watch ended: end it anyway

    def release(self, run: Run) -> None:
        """``run``'s outcome is committed (or given up on): stop beating for it."""
        self.end_body(run)
        with self._lock:
            self._held.discard(run)

    def held(self) -> list[Run]:
        with self._lock:
            return sorted(self._held)

    def stop(self) -> None:
        self._stopped.set()

    def run(self) -> None:
        next_beat = time.monotonic()  # a new worker is seen at once
        while not self._stopped.wait(self.cancel_interval):
            try:
                self._interrupt_cancelled()
                if time.monotonic() >= next_beat:
                    next_beat = time.monotonic() + self.heartbeat_interval
                    self._beat()
            except Exception as error:
                # A missed beat is not fatal; a long outage lets maintenance recover
                # the tasks, which is the right outcome if this worker is cut off.
                logger.warning("task monitor pass failed, trying again: %s", error)

    def _interrupt_cancelled(self) -> None:
        with self._lock:
            watched = {task_id for task_id, _ in self._bodies}
        if not watched:
            return
        with self.engine.begin() as conn:
            cancelled = set(store.tasks.cancel_requested(conn, sorted(watched)))
        with self._lock:
            for run, thread_id in list(self._bodies.items()):
                if run[0] in cancelled and run not in self._interrupted:
                    self._interrupted.add(run)
                    logger.info("cancelling task %s: interrupting its thread", run[0])
                    raise_thread_exception(thread_id, TaskCancelled)

    def _beat(self) -> None:
        # The worker reports in at every beat, holding runs or not: the admin stats list
        # the workers alive without reading tasks.
        now = utcnow()
        with self.engine.begin() as conn:
            store.workers.report(conn, self.worker_name, now)
            store.claims.beat(conn, self.held(), now)
