"""A worker process's heartbeat for the tasks its threads are running.

One thread per process refreshes ``heartbeat_at`` of every task it holds with a
single UPDATE; the sweeper recovers running tasks whose heartbeat stops.
"""

from __future__ import annotations

import logging
import threading

from sqlalchemy import Engine

from app import store
from app.models import utcnow

logger = logging.getLogger(__name__)


class Heartbeat(threading.Thread):
    """Beats every ``interval`` seconds for the task ids added to it."""

    def __init__(self, engine: Engine, *, interval: float) -> None:
        super().__init__(name="jobplane-heartbeat", daemon=True)
        self.engine = engine
        self.interval = interval
        self._held: set[str] = set()
        self._lock = threading.Lock()
        self._stopped = threading.Event()

    def hold(self, task_id: str) -> None:
        with self._lock:
            self._held.add(task_id)

    def release(self, task_id: str) -> None:
        with self._lock:
            self._held.discard(task_id)

    def stop(self) -> None:
        self._stopped.set()

    def run(self) -> None:
        while not self._stopped.wait(self.interval):
            with self._lock:
                held = list(self._held)
            try:
                with self.engine.begin() as conn:
                    store.beat(conn, held, utcnow())
            except Exception:
                # A missed beat is not fatal; a long outage lets the sweeper recover
                # the tasks, which is the right outcome if this worker is cut off.
                logger.exception("heartbeat failed for %d task(s)", len(held))
