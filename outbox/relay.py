"""The outbox relay: publishes committed outbox rows to the broker, then deletes them.

One batch is one transaction: delete due rows (locked with SKIP LOCKED) returning what
their messages need, publish a message per row, commit. A crash between publishing and
committing leaves the rows in place and they are published again; the worker's claim
drops the duplicate (invariant 2). A broker that is down makes the transaction roll
back, and the relay backs off and tries again, losing nothing.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from datetime import datetime

import dramatiq
from sqlalchemy import Connection, Engine

from app import counters, store
from app.db import HeldConnection
from app.models import utcnow
from app.settings import Settings
from outbox.publisher import publish
from outbox.sweeper import Sweeper
from outbox.wakeup import Wakeup, wakeup_for

logger = logging.getLogger(__name__)

#: Test hook: kill the relay with SIGKILL after publishing a batch, before its commit.
CRASH_AFTER_PUBLISH_ENV = "JOBPLANE_TEST_CRASH_AFTER_PUBLISH"


class Relay:
    """Moves outbox rows to the broker; runs the sweeper between batches if given one."""

    def __init__(
        self,
        engine: Engine,
        broker: dramatiq.Broker,
        settings: Settings,
        *,
        sweeper: Sweeper | None = None,
        wakeup: Wakeup | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.engine = engine
        self.broker = broker
        self.settings = settings
        # JOBPLANE_SWEEP_INTERVAL=0 turns the sweeper off, as --no-sweeper does.
        self.sweeper = sweeper if settings.sweep_interval > 0 else None
        self.wakeup = wakeup or wakeup_for(engine)
        self.clock = clock
        # Batches run on one connection kept between them; a dead one fails its batch
        # (which backs off, as any failed batch) and is replaced for the next.
        self._connection = HeldConnection(engine)
        self.published = 0
        self._stopped = threading.Event()
        self._swept_once = False
        #: When the earliest row not due yet becomes due, as of the last partial batch.
        self._next_due: datetime | None = None
        self._crash_after_publish = os.environ.get(CRASH_AFTER_PUBLISH_ENV) == "1"

    def relay_once(self) -> int:
        """Publish one batch of due rows; returns how many rows it took."""
        if self.sweeper is not None and not self._swept_once:
            # Sweep before publishing anything: the sweeper must record the broker's
            # epoch first, or a loss right after the first batch would look like the
            # first sight of a broker, and its messages would not be published again.
            # A failure here backs off like a failed batch: nothing is published blind.
            self.sweeper.sweep()
            self._swept_once = True
        now = self.clock()
        published = self._connection.run(lambda conn: self._relay_batch(conn, now))
        self.published += published
        return published

    def _relay_batch(self, conn: Connection, now: datetime) -> int:
        limit = self.settings.relay_batch_size
        messages, next_due = store.take_outbox_batch(conn, now, limit)
        if messages:
            self._publish(messages)
            if self._crash_after_publish:
                os.kill(os.getpid(), signal.SIGKILL)
            # After the publish, so that the counter's row (which every relay updates) is
            # locked for as short a time as possible.
            store.add_to_counters(conn, {(counters.RELAY_PUBLISHED.name, ""): len(messages)})
        # For the wait after a partial batch: until the next row not yet due is due.
        self._next_due = next_due if len(messages) < limit else None
        return len(messages)

    def _publish(self, rows: list[store.OutboxMessage]) -> None:
        publish(self.broker, *rows)

    def drain(self) -> int:
        """Publish every due row now; returns how many rows were taken."""
        total = 0
        try:
            while taken := self.relay_once():
                total += taken
        finally:
            self.close()
        return total

    def run(self) -> None:
        """Relay until ``stop()``: a batch, then (if the table is drained) a wait."""
        backoff = 0.0
        next_sweep = time.monotonic() + self.settings.sweep_interval  # the first: in relay_once
        while not self._stopped.is_set():
            try:
                taken = self.relay_once()
                backoff = 0.0
            except Exception:
                backoff = min(self.settings.relay_max_backoff, max(0.1, backoff * 2))
                logger.exception("relay batch failed; retrying in %.1f s", backoff)
                if self.sweeper is not None:
                    self.sweeper.note_outage()
                self._count_error()
                self._stopped.wait(backoff)
                continue
            if self.sweeper is not None and time.monotonic() >= next_sweep:
                next_sweep = time.monotonic() + self.settings.sweep_interval
                self._sweep()
            if taken < self.settings.relay_batch_size:
                self.wakeup.wait(self._idle_wait())
        self.close()

    def _idle_wait(self) -> float:
        """Seconds to wait: until the next delayed row is due, at most the poll interval."""
        wait = self.settings.relay_poll_interval
        if self._next_due is not None:
            wait = min(wait, max(0.0, (self._next_due - self.clock()).total_seconds()))
        return wait

    def _count_error(self) -> None:
        """Best effort: the database may be what failed."""
        try:
            with self.engine.begin() as conn:
                store.add_to_counters(conn, {(counters.RELAY_ERRORS.name, ""): 1})
        except Exception:
            logger.debug("could not count the relay error", exc_info=True)

    def _sweep(self) -> None:
        assert self.sweeper is not None
        try:
            self.sweeper.sweep()
        except Exception:
            logger.exception("sweep failed; trying again at the next interval")

    def close(self) -> None:
        """Give back the database connection that batches run on (a later batch takes
        another): ``run`` and ``drain`` do when they end."""
        self._connection.close()

    def stop(self) -> None:
        self._stopped.set()
        self.wakeup.wake()
