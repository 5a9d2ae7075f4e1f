"""The sweeper: puts back what a dead process or a forgetful broker let go.

Four passes, each logged and counted:
1. running tasks whose heartbeat stopped (their worker died) → pending, new dispatch;
2. a changed broker epoch (Redis lost its data) → every task published before is
   published again;
3. the backstop for a partial loss (Redis kept its epoch but not every message):
   published tasks due more than ``unclaimed_after`` ago and never claimed, whose
   message the broker no longer holds, checked one by one → published again;
4. tasks waiting for a concurrency slot while no task of their type runs (whoever
   should have woken them died) → published again.
A long backlog alone never triggers a republication: that would flood the queue.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from datetime import datetime, timedelta

import dramatiq
from sqlalchemy import Engine

from jobplane import counters, store
from jobplane.models import utcnow
from jobplane.outbox import broker_state
from jobplane.settings import Settings

logger = logging.getLogger(__name__)

#: How many republished task ids the unclaimed pass's warning names.
LOGGED_IDS = 10


class Sweeper:
    """Recovers lost work; ``counts`` totals what each pass recovered in this process."""

    def __init__(
        self,
        engine: Engine,
        broker: dramatiq.Broker,
        settings: Settings,
        *,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.engine = engine
        self.broker = broker
        self.settings = settings
        self.clock = clock
        self.counts: Counter[str] = Counter()
        #: Whether a pass has failed, and since when passes succeed again: after an
        #: outage, workers need a heartbeat timeout of their own to beat again.
        self._failed = False
        self._reachable_since: datetime | None = None
        #: Where the unclaimed pass goes on: the last task id it checked ("": the start).
        self._unclaimed_after_id = ""

    def sweep(self) -> Counter[str]:
        """Run every pass once; returns what this pass recovered, by kind."""
        try:
            return self._sweep()
        except Exception:
            self.note_outage()
            raise

    def note_outage(self) -> None:
        """The database (or the broker) just failed this process: the next recovery of
        lost workers waits a heartbeat timeout, so live workers can beat first."""
        self._failed = True
        self._reachable_since = None

    def _sweep(self) -> Counter[str]:
        if self._failed and self._reachable_since is None:
            self._reachable_since = self.clock()
        found: Counter[str] = Counter()
        found.update(self.recover_dead_workers())
        found["republished_after_broker_loss"] += self.recover_broker_loss()
        found["republished_unclaimed"] += self.recover_unclaimed()
        found["woke_stranded_waiting"] += self.wake_stranded()
        found = +found  # drop zeros
        self.counts.update(found)
        with self.engine.begin() as conn:
            # Read by the scheduler, which stands in for the sweeper while no relay runs.
            now = self.clock()
            store.state.put_state(conn, store.state.RELAY_SEEN_KEY, now.isoformat(), now)
            kind = counters.SWEEPER_RECOVERIES.name
            store.stats.add_to_counters(conn, {(kind, label): n for label, n in found.items()})
        return found

    def recover_dead_workers(self, *, stale_before: datetime | None = None) -> Counter[str]:
        now = self.clock()
        cutoff = stale_before or now - timedelta(seconds=self.settings.heartbeat_timeout)
        if self._reachable_since is not None and self._reachable_since > cutoff:
            return Counter()  # back from an outage: live workers have not beaten yet
        with self.engine.begin() as conn:
            recovery = store.recovery.recover_stale_running(conn, cutoff, now)
        for task_id in recovery.retried:
            logger.warning("recovered task %s from a lost worker: pending again", task_id)
        for task_id in recovery.failed:
            logger.warning("task %s lost its worker on its last attempt: failed", task_id)
        return Counter(
            recovered_from_lost_worker=len(recovery.retried),
            failed_after_lost_worker=len(recovery.failed),
        )

    def recover_broker_loss(self) -> int:
        """Republish everything published under an epoch the broker no longer has."""
        current = broker_state.broker_epoch(self.broker)
        now = self.clock()
        with self.engine.begin() as conn:
            known = store.state.read_state(conn, store.state.BROKER_EPOCH_KEY)
            # The swap waits for relays' batches in flight (``count_published_batch``
            # locks the epoch): the republication below then includes their tasks.
            swapped = known != current and store.state.swap_state(
                conn, store.state.BROKER_EPOCH_KEY, known, current, now
            )
            if not swapped:
                return 0  # unchanged, or another relay handled the change
            if known is None:
                return 0  # first sight of this broker: nothing was published under another
            task_ids = store.recovery.republish_pending(conn, now=now)
        # A new epoch also means a new in-memory broker (each `jobplane dev` start).
        log = logger.warning if task_ids else logger.info
        log(
            "the broker lost its messages (epoch %s → %s): republished %d task(s)",
            known,
            current,
            len(task_ids),
        )
        return len(task_ids)

    def wake_stranded(self) -> int:
        """Tasks waiting for a concurrency slot while none of their type runs."""
        with self.engine.begin() as conn:
            task_ids = store.concurrency.wake_stranded(conn, self.clock())
        for task_id in task_ids:
            logger.warning("task %s waited for a slot no running task would free: woken", task_id)
        return len(task_ids)

    def recover_unclaimed(self) -> int:
        """Republish published tasks still unclaimed ``unclaimed_after`` s after they were
        due whose message the broker no longer holds; returns how many.

        Each pass checks up to ``unclaimed_check_batch`` of them (by task id, going on
        from where the last pass stopped), in one query and one broker round trip, so a
        long backlog costs every pass the same and is walked through in turn. Messages
        still queued, however old, are left alone.
        """
        now = self.clock()
        limit = self.settings.unclaimed_check_batch
        with self.engine.begin() as conn:
            candidates = store.recovery.unclaimed_publications(
                conn,
                due_before=now - timedelta(seconds=self.settings.unclaimed_after),
                after=self._unclaimed_after_id,
                limit=limit,
            )
        # A short page is the end of the walk: the next pass starts over.
        self._unclaimed_after_id = candidates[-1].task_id if len(candidates) == limit else ""
        lost = broker_state.not_held(self.broker, candidates)
        if not lost:
            return 0
        with self.engine.begin() as conn:
            # Guarded by dispatch: a task claimed or retried since it was read stays as is.
            task_ids = store.recovery.republish_pending(conn, now=now, only=lost)
        if task_ids:
            logger.warning(
                "the broker no longer holds the message of %d task(s) unclaimed %.0f s after"
                " they were due: republished (%s%s)",
                len(task_ids),
                self.settings.unclaimed_after,
                ", ".join(task_ids[:LOGGED_IDS]),
                ", …" if len(task_ids) > LOGGED_IDS else "",
            )
        return len(task_ids)
