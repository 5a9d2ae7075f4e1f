"""How a thread waits for a task to finish: LISTEN on PostgreSQL, polling on SQLite.

On PostgreSQL every statement that makes tasks terminal notifies their ids on
``jobplane_task_done`` (``jobplane.models.TASK_DONE_NOTIFY_DDL``). One listening
connection per process and database serves every waiting thread: a small thread reads
the notifications and sets the events of the threads waiting for those ids. A waiter
reads its task after it registered, and again whenever it is woken or a slow safety
interval passed, so a notification it missed (sent before it listened, lost while the
connection was down) costs it at most that interval. On SQLite, waiters poll with
backoff.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol

import psycopg
from sqlalchemy import Engine

from jobplane.db import close_quietly, listening_connection
from jobplane.models import TASK_DONE_CHANNEL

logger = logging.getLogger(__name__)

#: Seconds: a listening waiter reads its task again at least this often, woken or not.
SAFETY_INTERVAL = 5.0
POLL_FIRST = 0.02  #: seconds before a polling waiter's second read (SQLite)
POLL_MAX = 1.0  #: seconds between a polling waiter's reads, at most (doubling up to it)
RECONNECT_FIRST = 0.1  #: seconds before the listener's first reconnection attempt
RECONNECT_MAX = 5.0  #: seconds between its attempts, at most (doubling up to it)
#: Seconds the listener keeps its connection without waiters before it closes it (the
#: next wait opens another).
IDLE_CLOSE = 30.0
#: Seconds the listener waits for notifications before it looks whether to close.
_LOOK_EVERY = 1.0


class Watch(Protocol):
    """One waiter's view of its task: ``pause`` returns when the task may have changed."""

    def pause(self, timeout: float) -> None:
        """Return when the task may have changed, or after at most ``timeout`` s."""


class PollingWatch:
    """Pauses 20 ms, then twice as long each time, up to 1 s (``POLL_FIRST``, ``POLL_MAX``)."""

    def __init__(self) -> None:
        self._delay = POLL_FIRST

    def pause(self, timeout: float) -> None:
        time.sleep(max(0.0, min(self._delay, timeout)))
        self._delay = min(self._delay * 2, POLL_MAX)


class ListeningWatch:
    """Pauses until the listener is told the task finished, or ``SAFETY_INTERVAL`` s."""

    def __init__(self) -> None:
        self.event = threading.Event()

    def pause(self, timeout: float) -> None:
        self.event.wait(max(0.0, min(timeout, SAFETY_INTERVAL)))
        # Cleared before the waiter's next read: a notification after it sets it again.
        self.event.clear()


class TaskDoneListener:
    """The process's LISTEN on ``jobplane_task_done`` for one database.

    Started by the first waiter; closes its connection after ``IDLE_CLOSE`` s without
    waiters, or when its connection fails while nobody waits. A failed connection is
    opened again with backoff (``RECONNECT_FIRST`` doubling to ``RECONNECT_MAX``), and
    after every LISTEN every waiter is woken to read its task again: what was notified
    while nobody listened is lost.
    """

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._lock = threading.Lock()
        self._watches: dict[str, set[ListeningWatch]] = {}
        self._running = False
        self._idle_since = time.monotonic()
        self._conn: psycopg.Connection[tuple[object, ...]] | None = None

    @property
    def backend_pid(self) -> int | None:
        """The listening connection's server process (None while not connected)."""
        conn = self._conn
        return None if conn is None or conn.closed else conn.info.backend_pid

    def add(self, task_id: str, watch: ListeningWatch) -> None:
        with self._lock:
            self._watches.setdefault(task_id, set()).add(watch)
            if not self._running:
                self._running = True
                thread = threading.Thread(target=self._run, name="jobplane-task-done", daemon=True)
                thread.start()

    def watched(self) -> set[str]:
        """The ids some waiter waits for now."""
        with self._lock:
            return set(self._watches)

    def discard(self, task_id: str, watch: ListeningWatch) -> None:
        with self._lock:
            watches = self._watches.get(task_id, set())
            watches.discard(watch)
            if not watches:
                self._watches.pop(task_id, None)
            if not self._watches:
                self._idle_since = time.monotonic()

    def _run(self) -> None:
        delay = RECONNECT_FIRST
        while True:
            try:
                self._conn = listening_connection(self._engine, TASK_DONE_CHANNEL)
                self._wake(None)  # whatever finished before the LISTEN was not heard
                delay = RECONNECT_FIRST
                if self._listen(self._conn):
                    return
            except Exception:  # a background thread survives every error (DESIGN)
                logger.warning("task-done listener failed; reconnecting", exc_info=True)
                self._wake(None)
            finally:
                self._close()
            if self._stop_when_unwatched(for_at_least=0.0):
                return
            time.sleep(delay)
            delay = min(delay * 2, RECONNECT_MAX)

    def _listen(self, conn: psycopg.Connection[tuple[object, ...]]) -> bool:
        """Dispatch notifications until idle for ``IDLE_CLOSE`` s (True: stopped)."""
        while True:
            for notify in conn.notifies(timeout=_LOOK_EVERY):
                self._wake(notify.payload.split(","))
            if self._stop_when_unwatched(for_at_least=IDLE_CLOSE):
                return True

    def _stop_when_unwatched(self, *, for_at_least: float) -> bool:
        """Whether to stop: nobody waited for ``for_at_least`` s (then a new waiter
        starts a new thread)."""
        with self._lock:
            if self._watches or time.monotonic() - self._idle_since < for_at_least:
                return False
            self._running = False
            return True

    def _wake(self, task_ids: list[str] | None) -> None:
        """Set the events of the waiters of ``task_ids`` (None: of every waiter)."""
        with self._lock:
            if task_ids is None:
                watches = [w for group in self._watches.values() for w in group]
            else:
                watches = [w for task_id in task_ids for w in self._watches.get(task_id, ())]
        for watch in watches:
            watch.event.set()

    def _close(self) -> None:
        conn, self._conn = self._conn, None
        close_quietly(conn)


_listeners: dict[str, TaskDoneListener] = {}
_listeners_lock = threading.Lock()


def _forget_listeners() -> None:
    # A forked child has none of its parent's threads or connections: its first wait
    # starts a listener of its own.
    global _listeners_lock
    _listeners.clear()
    _listeners_lock = threading.Lock()


os.register_at_fork(after_in_child=_forget_listeners)


def listener_for(engine: Engine) -> TaskDoneListener:
    """This process's listener for ``engine``'s database (made at first use)."""
    key = engine.url.render_as_string(hide_password=False)
    with _listeners_lock:
        listener = _listeners.get(key)
        if listener is None:
            listener = _listeners[key] = TaskDoneListener(engine)
        return listener


@contextmanager
def watching(engine: Engine, task_id: str) -> Iterator[Watch]:
    """A watch on ``task_id`` for the block: registered before the caller's first read."""
    if engine.dialect.name != "postgresql":
        yield PollingWatch()
        return
    listener = listener_for(engine)
    watch = ListeningWatch()
    listener.add(task_id, watch)
    try:
        yield watch
    finally:
        listener.discard(task_id, watch)
