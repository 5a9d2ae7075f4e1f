"""The rescuer: puts back what a dead process or a forgetful broker let go.

Run by the maintenance leader every ``interval`` s; four passes, each logged and counted:
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
from jobplane.broker import state as broker_state
from jobplane.maintenance.service import Service
from jobplane.models import utcnow
from jobplane.settings import Settings

logger = logging.getLogger(__name__)

#: How many republished task ids the unclaimed pass's warning names.
LOGGED_IDS = 10
DEFAULT_INTERVAL = 5.0  #: seconds between two sweeps (``JOBPLANE_SWEEP_INTERVAL``)
#: A running task whose heartbeat is older than this (s) lost its worker
#: (``JOBPLANE_HEARTBEAT_TIMEOUT``).
DEFAULT_HEARTBEAT_TIMEOUT = 60.0
#: A published task unclaimed this long (s) after it was due is checked on the broker
#: (``JOBPLANE_UNCLAIMED_AFTER``).
DEFAULT_UNCLAIMED_AFTER = 60.0
#: Unclaimed tasks one sweep checks on the broker (``JOBPLANE_UNCLAIMED_CHECK_BATCH``).
DEFAULT_UNCLAIMED_CHECK_BATCH = 2000


class Rescuer(Service):
    """Recovers lost work; ``counts`` totals what each pass recovered in this process.

    ``interval``: seconds between sweeps (default 5); ``heartbeat_timeout``: seconds
    after its last heartbeat a running task counts as lost (60); ``unclaimed_after``:
    seconds after it was due a published, unclaimed task is checked on the broker
    (60); ``unclaimed_check_batch``: how many of those one sweep checks (2,000).
    """

    name = "rescuer"

    def __init__(
        self,
        engine: Engine,
        broker: dramatiq.Broker,
        *,
        interval: float = DEFAULT_INTERVAL,
        heartbeat_timeout: float = DEFAULT_HEARTBEAT_TIMEOUT,
        unclaimed_after: float = DEFAULT_UNCLAIMED_AFTER,
        unclaimed_check_batch: int = DEFAULT_UNCLAIMED_CHECK_BATCH,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.engine = engine
        self.broker = broker
        self.interval = interval
        self.heartbeat_timeout = heartbeat_timeout
        self.unclaimed_after = unclaimed_after
        self.unclaimed_check_batch = unclaimed_check_batch
        self.clock = clock
        self.counts: Counter[str] = Counter()
        #: Whether a pass has failed, and since when passes succeed again: after an
        #: outage, workers need a heartbeat timeout of their own to beat again.
        self._failed = False
        self._reachable_since: datetime | None = None
        #: Where the unclaimed pass goes on: the last task id it checked ("": the start).
        self._unclaimed_after_id = ""

    @classmethod
    def from_settings(
        cls,
        engine: Engine,
        broker: dramatiq.Broker,
        settings: Settings,
        *,
        clock: Callable[[], datetime] = utcnow,
    ) -> Rescuer:
        """A rescuer with the intervals and timeouts of ``settings``."""
        return cls(
            engine,
            broker,
            interval=settings.sweep_interval,
            heartbeat_timeout=settings.heartbeat_timeout,
            unclaimed_after=settings.unclaimed_after,
            unclaimed_check_batch=settings.unclaimed_check_batch,
            clock=clock,
        )

    def run_once(self) -> float:
        self.sweep()
        return self.interval

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

    def note_reachable(self) -> None:
        """The database answered: after an outage, the heartbeat timeout counts from now."""
        if self._failed and self._reachable_since is None:
            self._reachable_since = self.clock()

    def _sweep(self) -> Counter[str]:
        self.note_reachable()
        found: Counter[str] = Counter()
        found.update(self.recover_dead_workers())
        found["republished_after_broker_loss"] += self.recover_broker_loss()
        found["republished_unclaimed"] += self.recover_unclaimed()
        found["woke_stranded_waiting"] += self.wake_stranded()
        found = +found  # drop zeros
        self.counts.update(found)
        if found:
            with self.engine.begin() as conn:
                kind = counters.SWEEPER_RECOVERIES.name
                counts = {(kind, label): n for label, n in found.items()}
                store.stats.add_to_counters(conn, counts)
        return found

    def recover_dead_workers(self, *, stale_before: datetime | None = None) -> Counter[str]:
        now = self.clock()
        cutoff = stale_before or now - timedelta(seconds=self.heartbeat_timeout)
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
                return 0  # unchanged, or another leader handled the change
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
        limit = self.unclaimed_check_batch
        with self.engine.begin() as conn:
            candidates = store.recovery.unclaimed_publications(
                conn,
                due_before=now - timedelta(seconds=self.unclaimed_after),
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
                self.unclaimed_after,
                ", ".join(task_ids[:LOGGED_IDS]),
                ", …" if len(task_ids) > LOGGED_IDS else "",
            )
        return len(task_ids)
