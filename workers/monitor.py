"""Watching the tasks a worker process runs: heartbeats and cancellations.

One thread per process. Every ``cancel_interval`` it asks the database whether any
task it holds was cancelled, and raises ``TaskCancelled`` in that task's thread (the
way Dramatiq's time limit interrupts a thread); every ``heartbeat_interval`` it
refreshes ``heartbeat_at`` of all of them with one UPDATE. The sweeper recovers
running tasks whose heartbeat stops.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

from dramatiq.threading import raise_thread_exception
from sqlalchemy import Engine

from app import store
from app.models import utcnow
from workers.context import TaskCancelled

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Held:
    thread_id: int
    dispatch: int


class TaskMonitor(threading.Thread):
    """Heartbeats and cancellation checks for the tasks this process runs."""

    def __init__(
        self, engine: Engine, *, heartbeat_interval: float, cancel_interval: float
    ) -> None:
        super().__init__(name="jobplane-monitor", daemon=True)
        self.engine = engine
        self.heartbeat_interval = heartbeat_interval
        self.cancel_interval = cancel_interval
        self._held: dict[str, Held] = {}
        self._interrupted: set[str] = set()
        self._lock = threading.Lock()
        self._stopped = threading.Event()

    def hold(self, task_id: str, dispatch: int) -> None:
        with self._lock:
            self._held[task_id] = Held(threading.get_ident(), dispatch)

    def release(self, task_id: str) -> None:
        """Stop watching ``task_id``; safe against an interrupt arriving meanwhile."""
        while True:
            try:
                with self._lock:
                    self._held.pop(task_id, None)
                    self._interrupted.discard(task_id)
                return
            except TaskCancelled:
                continue  # raised just before the release took effect: release anyway

    def held(self) -> list[tuple[str, int]]:
        with self._lock:
            return [(task_id, held.dispatch) for task_id, held in self._held.items()]

    def stop(self) -> None:
        self._stopped.set()

    def run(self) -> None:
        next_beat = time.monotonic() + self.heartbeat_interval
        while not self._stopped.wait(self.cancel_interval):
            try:
                self._interrupt_cancelled()
                if time.monotonic() >= next_beat:
                    next_beat = time.monotonic() + self.heartbeat_interval
                    self._beat()
            except Exception:
                # A missed beat is not fatal; a long outage lets the sweeper recover
                # the tasks, which is the right outcome if this worker is cut off.
                logger.exception("task monitor pass failed")

    def _interrupt_cancelled(self) -> None:
        with self._lock:
            watched = [task_id for task_id in self._held if task_id not in self._interrupted]
        if not watched:
            return
        with self.engine.begin() as conn:
            cancelled = store.cancel_requested(conn, watched)
        with self._lock:
            for task_id in cancelled:
                held = self._held.get(task_id)
                if held is not None and task_id not in self._interrupted:
                    self._interrupted.add(task_id)
                    logger.info("cancelling task %s: interrupting its thread", task_id)
                    raise_thread_exception(held.thread_id, TaskCancelled)

    def _beat(self) -> None:
        with self._lock:
            task_ids = list(self._held)
        if task_ids:
            with self.engine.begin() as conn:
                store.beat(conn, task_ids, utcnow())
