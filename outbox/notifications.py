"""How the relay waits for new outbox rows: LISTEN/NOTIFY on PostgreSQL, a timer on SQLite.

A trigger on ``jobplane_outbox`` (``jobplane.models.OUTBOX_NOTIFY_DDL``) sends ``NOTIFY
jobplane_outbox_wakeup`` once per inserting statement; PostgreSQL delivers it only when
that transaction commits. A channel is database-wide: relays of jobplane installs in two
schemas of one database wake each other, which costs each a scan, nothing more.
"""

from __future__ import annotations

import logging
import threading
import time

import psycopg
from sqlalchemy import Engine

from jobplane.db import close_quietly, listening_connection
from jobplane.models import OUTBOX_CHANNEL

logger = logging.getLogger(__name__)

CHANNEL = OUTBOX_CHANNEL
#: Longest a LISTEN wait goes without looking whether ``wake()`` was called, in s.
WAKE_CHECK = 0.5


class Wakeup:
    """Waits until woken or the timeout passes (the SQLite default: a plain timer)."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def wait(self, timeout: float) -> None:
        self._event.wait(timeout)
        self._event.clear()

    def wake(self) -> None:
        """Cut the current wait short (used to stop the relay)."""
        self._event.set()

    def close(self) -> None:
        self.wake()


class PostgresWakeup(Wakeup):
    """Returns as soon as a committed outbox insert notifies, or after the timeout."""

    def __init__(self, engine: Engine) -> None:
        super().__init__()
        self._engine = engine
        self._conn: psycopg.Connection[tuple[object, ...]] | None = None

    def _listen(self) -> bool:
        """Make sure this connection listens; True if it has only just begun to."""
        if self._conn is not None and not self._conn.closed:
            return False
        self._conn = listening_connection(self._engine, CHANNEL)
        return True

    def wait(self, timeout: float) -> None:
        if self._event.is_set():
            self._event.clear()
            return
        try:
            if self._listen():
                # A commit between the batch before this wait and the LISTEN notified
                # no one: the relay's first batch, or its first after a lost connection.
                # A batch now, listening, sees its rows.
                return
            assert self._conn is not None
            self._wait_for_notification(self._conn, timeout)
            # Those already queued behind the first notification are for rows the next
            # batch takes too: a burst of commits is one wake-up.
            for _ in self._conn.notifies(timeout=0):
                pass
        except psycopg.Error:
            logger.warning("LISTEN connection failed; polling until it is back", exc_info=True)
            close_quietly(self._conn)
            self._conn = None
            super().wait(timeout)

    def _wait_for_notification(
        self, conn: psycopg.Connection[tuple[object, ...]], timeout: float
    ) -> None:
        """Until a notification, ``wake()`` or ``timeout`` s. ``wake()`` cannot cut a
        wait inside the driver short, so the wait is taken in slices of ``WAKE_CHECK``
        s: a stopping relay (its SIGTERM handler calls ``wake()``) is gone within one,
        not after a whole poll interval."""
        deadline = time.monotonic() + timeout
        while not self._event.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                return
            for _ in conn.notifies(timeout=min(left, WAKE_CHECK), stop_after=1):
                return
        self._event.clear()

    def close(self) -> None:
        super().close()
        close_quietly(self._conn)
        self._conn = None


def wakeup_for(engine: Engine) -> Wakeup:
    return PostgresWakeup(engine) if engine.dialect.name == "postgresql" else Wakeup()
