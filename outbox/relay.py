"""The outbox relay: publishes committed outbox rows to the broker, then deletes them.

One batch is one transaction: delete due rows (locked with SKIP LOCKED) returning what
their messages need, publish a message per row, commit. A crash between publishing and
committing leaves the rows in place and they are published again; the worker's claim
drops the duplicate (invariant 2). A broker that is down makes the transaction roll
back, and the relay backs off and tries again, losing nothing.

A batch commits only under the broker epoch the database records: if the broker lost
its data before the batch's messages were enqueued, or a sweeper is handling a loss
that the batch's messages were part of, the batch rolls back and is published again.
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

from jobplane import counters, store
from jobplane.db import HeldConnection
from jobplane.domain import JobplaneError
from jobplane.models import utcnow
from jobplane.outbox.publisher import publish
from jobplane.outbox.sweeper import Sweeper
from jobplane.outbox.wakeup import Wakeup, wakeup_for
from jobplane.settings import Settings

logger = logging.getLogger(__name__)

#: Test hook: kill the relay with SIGKILL after publishing a batch, before its commit.
CRASH_AFTER_PUBLISH_ENV = "JOBPLANE_TEST_CRASH_AFTER_PUBLISH"


class BrokerEpochChanged(JobplaneError):
    """The broker's epoch is not the one the database records: the batch rolled back."""


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
        """Publish one batch of due rows; returns how many rows it took.

        A batch refused for a changed broker epoch is tried once more after a sweep
        (which records the new epoch); a relay without a sweeper raises
        ``BrokerEpochChanged`` and waits for another relay's sweeper to record it.
        """
        try:
            return self._sweep_first_and_relay()
        except BrokerEpochChanged as changed:
            if self.sweeper is None:
                raise
            logger.warning("%s; sweeping, then publishing the batch again", changed)
            self._swept_once = False
            return self._sweep_first_and_relay()

    def _sweep_first_and_relay(self) -> int:
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
        messages, next_due = store.outbox.take_outbox_batch(conn, now, limit)
        if messages:
            epoch = self._publish(messages)
            if self._crash_after_publish:
                os.kill(os.getpid(), signal.SIGKILL)
            # After the publish, so that the counter's row (which every relay updates)
            # and the recorded epoch are locked for as short a time as possible.
            self._count_under_epoch(conn, len(messages), epoch)
        # For the wait after a partial batch: until the next row not yet due is due.
        self._next_due = next_due if len(messages) < limit else None
        return len(messages)

    def _count_under_epoch(self, conn: Connection, published: int, epoch: str | None) -> None:
        """Count the batch; raise ``BrokerEpochChanged`` (the batch rolls back) unless its
        messages were enqueued under the epoch the database records."""
        recorded = store.outbox.count_published_batch(
            conn, published, counters.RELAY_PUBLISHED.name
        )
        # None recorded: no sweeper has looked at this broker yet (the first one to look
        # takes the broker as it finds it, these messages included).
        if recorded is not None and recorded != epoch:
            raise BrokerEpochChanged(
                f"the broker's epoch is {epoch}, the database's {recorded}:"
                f" {published} row(s) stay in the outbox"
            )

    def _publish(self, rows: list[store.outbox.OutboxMessage]) -> str | None:
        """Publish ``rows``; returns the broker's epoch as of their enqueues."""
        return publish(self.broker, *rows)

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
            except Exception as error:
                backoff = min(self.settings.relay_max_backoff, max(0.1, backoff * 2))
                if isinstance(error, BrokerEpochChanged):
                    logger.warning("%s; retrying in %.1f s", error, backoff)
                else:
                    logger.exception("relay batch failed; retrying in %.1f s", backoff)
                    if self.sweeper is not None:
                        self.sweeper.note_outage()
                self._count_error()
                self._stopped.wait(backoff)
                continue
            recovered = 0
            if self.sweeper is not None and time.monotonic() >= next_sweep:
                next_sweep = time.monotonic() + self.settings.sweep_interval
                recovered = self._sweep()
            # What the sweep put back in the outbox is due now: no wait for it.
            if taken < self.settings.relay_batch_size and not recovered:
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
                store.stats.add_to_counters(conn, {(counters.RELAY_ERRORS.name, ""): 1})
        except Exception:
            logger.debug("could not count the relay error", exc_info=True)

    def _sweep(self) -> int:
        """Sweep once; returns how many tasks it recovered (0 if it failed)."""
        assert self.sweeper is not None
        try:
            return sum(self.sweeper.sweep().values())
        except Exception:
            logger.exception("sweep failed; trying again at the next interval")
            return 0

    def close(self) -> None:
        """Give back the database connection that batches run on (a later batch takes
        another): ``run`` and ``drain`` do when they end."""
        self._connection.close()

    def stop(self) -> None:
        self._stopped.set()
        self.wakeup.wake()
