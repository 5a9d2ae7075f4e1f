"""The outbox relay: publishes committed outbox rows to the broker, then deletes them.

One batch is one transaction: lock due rows (SKIP LOCKED), highest priority first, then
oldest; keep those their queue's window has room for (``jobplane.outbox.window``),
publish a message per row, delete and count them, commit. A crash between publishing and committing
leaves the rows in place and they are published again; the worker's claim drops the
duplicate (invariant 2). A broker that is down makes the transaction roll back, and the
relay backs off and tries again, losing nothing. Rows a full window holds back stay in
the outbox, and the relay looks again after ``relay_window_interval`` seconds, as
workers make room.

A batch commits only under the broker epoch the database records: if the broker lost
its data before the batch's messages were enqueued, or the maintenance leader is
handling a loss that the batch's messages were part of, the batch rolls back and is
published again once the leader has recorded the new epoch. Recovering lost work is
the leader's (``jobplane.maintenance``), not the relay's.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections import Counter
from collections.abc import Callable
from datetime import datetime

import dramatiq
from sqlalchemy import Connection, Engine

from jobplane import counters, store
from jobplane.broker import state as broker_state
from jobplane.db import HeldConnection
from jobplane.domain import JobplaneError
from jobplane.models import utcnow
from jobplane.outbox.notifications import Wakeup, wakeup_for
from jobplane.outbox.publisher import publish
from jobplane.outbox.window import Window
from jobplane.settings import Settings

logger = logging.getLogger(__name__)

#: Test hook: kill the relay with SIGKILL after publishing a batch, before its commit.
CRASH_AFTER_PUBLISH_ENV = "JOBPLANE_TEST_CRASH_AFTER_PUBLISH"
#: Looks at the outbox one batch takes at most: each after the first goes on past the
#: rows of queues whose window is full, so that one full queue does not starve another.
MAX_LOOKS = 4


class BrokerEpochChanged(JobplaneError):
    """The broker's epoch is not the one the database records: the batch rolled back."""


class _EpochFirst(Exception):
    """The relay's first batch found rows to publish: record the broker's epoch first."""


class Relay:
    """Moves outbox rows to the broker."""

    def __init__(
        self,
        engine: Engine,
        broker: dramatiq.Broker,
        settings: Settings,
        *,
        wakeup: Wakeup | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.engine = engine
        self.broker = broker
        self.settings = settings
        self.wakeup = wakeup or wakeup_for(engine)
        self.window = Window(broker, size=settings.relay_window)
        self.clock = clock
        # Batches run on one connection kept between them; a dead one fails its batch
        # (which backs off, as any failed batch) and is replaced for the next.
        self._connection = HeldConnection(engine)
        self.published = 0
        self._stopped = threading.Event()
        self._epoch_known = False
        #: When the earliest row not due yet becomes due, as of the last partial batch.
        self._next_due: datetime | None = None
        #: Whether the last batch left due rows behind for want of room in a window.
        self._held_back = False
        self._crash_after_publish = os.environ.get(CRASH_AFTER_PUBLISH_ENV) == "1"

    def relay_once(self) -> int:
        """Publish one batch of due rows; returns how many rows it took.

        A batch refused for a changed broker epoch raises ``BrokerEpochChanged``: it is
        published again once the maintenance leader has recorded the new epoch.
        """
        now = self.clock()
        try:
            published = self._connection.run(lambda conn: self._relay_batch(conn, now))
        except _EpochFirst:
            self._record_first_epoch()
            published = self._connection.run(lambda conn: self._relay_batch(conn, now))
        self.published += published
        return published

    def _relay_batch(self, conn: Connection, now: datetime) -> int:
        limit = self.settings.relay_batch_size
        rows, next_due = self._take(conn, now, limit)
        if rows:
            if not self._epoch_known:
                raise _EpochFirst  # rolls the batch back, before anything is published
            epoch = self._publish([row.message for row in rows])
            if self._crash_after_publish:
                os.kill(os.getpid(), signal.SIGKILL)
            # After the publish, so that the counter's row (which every relay updates)
            # and the recorded epoch are locked for as short a time as possible. The
            # rows are deleted there too: until then this batch's lock keeps them its own.
            self._count_under_epoch(conn, [row.id for row in rows], epoch)
        # For the wait after a partial batch: until the next row not yet due is due.
        self._next_due = next_due if len(rows) < limit else None
        return len(rows)

    def _take(
        self, conn: Connection, now: datetime, limit: int
    ) -> tuple[list[store.outbox.DueRow], datetime | None]:
        """Up to ``limit`` due rows, locked, highest priority first, that their queues'
        windows have room for; and when the next row not yet due is due.

        The broker is read at most once a look, for the queues whose count as last seen
        leaves too little room (``Window.room``), and not at all when the outbox has
        nothing due. ``_held_back`` says whether due rows were left behind.
        """
        rooms: dict[str, int] = {}
        taken: list[store.outbox.DueRow] = []
        after: store.outbox.After | None = None
        self._held_back = False
        next_due = None
        for look in range(MAX_LOOKS):
            asked = limit - len(taken)
            full = [queue for queue, room in rooms.items() if room <= 0]
            batch = store.outbox.lock_outbox_batch(conn, now, asked, after=after, skip_queues=full)
            if look == 0:
                next_due = batch.next_due
            taken += self._fitting(batch.rows, rooms)
            if len(batch.rows) < asked or len(taken) == limit:
                break
            after = (batch.rows[-1].priority, batch.rows[-1].id)
        return taken, next_due

    def _fitting(
        self, rows: list[store.outbox.DueRow], rooms: dict[str, int]
    ) -> list[store.outbox.DueRow]:
        """Those of ``rows`` their queues' windows have room for, in order; ``rooms``
        (each queue's room left in this batch) is read for new queues and drawn down."""
        wanted = Counter(row.message.queue for row in rows if row.message.queue not in rooms)
        if wanted:
            rooms.update(self.window.room(wanted))
        fitting = []
        for row in rows:
            if rooms[row.message.queue] > 0:
                rooms[row.message.queue] -= 1
                fitting.append(row)
            else:
                self._held_back = True
        return fitting

    def _record_first_epoch(self) -> None:
        """Record the broker's epoch if the database has none yet (a new platform).

        Before this relay publishes anything: unless some epoch is recorded, a loss
        right after the first batch would look like the first sight of a broker, and its
        messages would not be published again. In a transaction of its own, committed
        at once: another relay's first batch never waits for this one's. One recorded
        already, even another, is left alone: a change is a loss, which the maintenance
        leader handles (this relay's batches roll back until it has).
        """
        epoch = broker_state.broker_epoch(self.broker)
        with self.engine.begin() as conn:
            store.state.swap_state(conn, store.state.BROKER_EPOCH_KEY, None, epoch, self.clock())
        self._epoch_known = True

    def _count_under_epoch(self, conn: Connection, ids: list[int], epoch: str | None) -> None:
        """Delete the published rows ``ids`` and count them; raise ``BrokerEpochChanged``
        (the batch rolls back) unless their messages were enqueued under the epoch the
        database records."""
        recorded = store.outbox.count_published_batch(conn, ids, counters.RELAY_PUBLISHED.name)
        # None recorded: the epoch was lost from the database, or removed by hand; the
        # first to record one takes the broker as it finds it, these messages included.
        if recorded is not None and recorded != epoch:
            raise BrokerEpochChanged(
                f"the broker's epoch is {epoch}, the database's {recorded}:"
                f" {len(ids)} row(s) stay in the outbox"
            )

    def _publish(self, rows: list[store.outbox.OutboxMessage]) -> str | None:
        """Publish ``rows``; returns the broker's epoch as of their enqueues."""
        unfetched: dict[str, int] = {}
        self.window.forget()  # until the publish is known to have gone through
        epoch = publish(self.broker, *rows, unfetched=unfetched)
        self.window.seen(unfetched)
        return epoch

    def drain(self) -> int:
        """Publish every due row now that the windows have room for; returns how many
        rows were taken."""
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
        while not self._stopped.is_set():
            try:
                taken = self.relay_once()
                backoff = 0.0
            except Exception as error:
                backoff = min(self.settings.relay_max_backoff, max(0.1, backoff * 2))
                if isinstance(error, BrokerEpochChanged):
                    logger.warning(
                        "%s, until maintenance records the new epoch; retrying in %.1f s",
                        error,
                        backoff,
                    )
                else:
                    logger.exception("relay batch failed; retrying in %.1f s", backoff)
                self._count_error()
                self._stopped.wait(backoff)
                continue
            if taken < self.settings.relay_batch_size:
                self._wait()
        self.close()

    def _wait(self) -> None:
        """Until a commit notifies, or the next delayed row is due, at most the poll
        interval. While rows wait for room in a window, the next look comes after the
        window's interval, and a notification does not cut that short: a stream of
        commits behind a full window would otherwise make a look of each (a row of
        higher priority committed meanwhile waits at most the interval)."""
        if self._held_back:
            self._stopped.wait(min(self._idle_wait(), self.settings.relay_window_interval))
        else:
            self.wakeup.wait(self._idle_wait())

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

    def close(self) -> None:
        """Give back the database connection that batches run on (a later batch takes
        another): ``run`` and ``drain`` do when they end."""
        self._connection.close()

    def stop(self) -> None:
        self._stopped.set()
        self.wakeup.wake()
