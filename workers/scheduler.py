"""``jobplane scheduler``: records every schedule's runs as they fall due.

Each wake-up is a catch-up as of now (``jobplane.catchup``): fire times that arrived are
recorded as tasks, unique on (schedule, fire time). So the start-up catch-up, an
ordinary tick, a restart inside a tick, and a second scheduler all reduce to the
same idempotent step. Periodiq's own scheduler loop (host timezone only, nothing
stored, ticks lost while it is down) and its middleware (which drops periodic
messages older than 30 s) are not used; periodiq's ``cron()`` declares schedules.

While no relay runs (none has swept for ``RELAY_SILENCE``), each tick also recovers
running tasks whose worker died, which the relay's sweeper would otherwise do.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta

from sqlalchemy import Connection, Engine

from jobplane import catchup, store
from jobplane.models import utcnow
from jobplane.schedules import Schedule
from jobplane.settings import Settings
from jobplane.workers.leader import LeaderLock

logger = logging.getLogger(__name__)

MAX_SLEEP = 30.0  #: seconds between wake-ups at most, so new leadership or clocks are seen
STANDBY_POLL = 1.0  #: seconds between a standby scheduler's attempts to lead
#: Seconds between the leader's checks of its lock while it waits for the next fire
#: time: a leader cut off from the database steps down within about this long plus
#: the connection's keepalive timeout, even between ticks.
LEADER_CHECK = 2.0
ERROR_BACKOFF = 5.0  #: seconds to wait after a failed tick
#: A relay that has not swept for this long is taken to be gone.
RELAY_SILENCE = timedelta(minutes=2)


class Scheduler:
    """Turns due fire times into tasks; one leader among several (PostgreSQL)."""

    def __init__(
        self,
        engine: Engine,
        settings: Settings,
        schedules: Sequence[Schedule],
        *,
        clock: Callable[[], datetime] = utcnow,
        leader: LeaderLock | None = None,
    ) -> None:
        self.engine = engine
        self.settings = settings
        self.schedules = list(schedules)
        self.clock = clock
        self.leader = leader or LeaderLock(engine)
        self._stopped = threading.Event()
        #: When the leader ticks next (None: at once, as a new leader does).
        self._next_tick: datetime | None = None

    def tick(self, now: datetime | None = None) -> list[catchup.Decision]:
        """Record every run due as of ``now``; returns the decisions."""
        now = now or self.clock()
        with self.engine.begin() as conn:
            decisions = catchup.catch_up(conn, self.schedules, self.settings, now)
            self._recover_if_no_relay(conn, now)
        self._log(decisions)
        return decisions

    def _recover_if_no_relay(self, conn: Connection, now: datetime) -> None:
        """Stand in for the relay's sweeper, for dead workers' tasks, while none runs."""
        seen = store.state.read_state(conn, store.state.RELAY_SEEN_KEY)
        if seen is not None and now - datetime.fromisoformat(seen) < RELAY_SILENCE:
            return
        stale_before = now - timedelta(seconds=self.settings.heartbeat_timeout)
        recovery = store.recovery.recover_stale_running(conn, stale_before, now)
        for task_id in (*recovery.retried, *recovery.failed):
            logger.warning("no relay is sweeping: recovered task %s from a lost worker", task_id)

    def seconds_to_next_fire(self, now: datetime) -> float:
        upcoming = [s.next_fire_time(now) for s in self.schedules]
        soonest = min((fire for fire in upcoming if fire is not None), default=None)
        if soonest is None:
            return MAX_SLEEP
        return max(0.0, min(MAX_SLEEP, (soonest - now).total_seconds()))

    def run(self) -> None:
        """Lead (or wait to), tick, sleep until the next fire time; until ``stop()``."""
        if not self.schedules:
            logger.info("no schedules are declared; the scheduler has nothing to do")
        try:
            while not self._stopped.is_set():
                self._stopped.wait(self._step())
        finally:
            self.leader.release()

    def _step(self) -> float:
        """Lead or wait, tick when due; returns the seconds until the next step."""
        try:
            if not self.leader.acquire():
                self._next_tick = None
                return STANDBY_POLL
            now = self.clock()
            if self._next_tick is None or now >= self._next_tick:
                self.tick()
                now = self.clock()
                # Wake just after the fire time, so the run is due when recorded.
                wait = self.seconds_to_next_fire(now) + 0.01
                self._next_tick = now + timedelta(seconds=wait)
            return min(LEADER_CHECK, max(0.0, (self._next_tick - now).total_seconds()))
        except Exception:
            self._next_tick = None
            logger.exception("scheduler tick failed; retrying in %.0f s", ERROR_BACKOFF)
            return ERROR_BACKOFF

    def stop(self) -> None:
        self._stopped.set()

    @staticmethod
    def _log(decisions: list[catchup.Decision]) -> None:
        for decision in decisions:
            if decision.outcome == catchup.ENQUEUE:
                logger.info(
                    "%s: run of %s enqueued (%s)",
                    decision.schedule,
                    decision.fire_time,
                    decision.reason,
                )
            elif decision.outcome == catchup.SKIPPED and decision.task_id:
                logger.warning(
                    "%s: run of %s recorded skipped: %s",
                    decision.schedule,
                    decision.fire_time,
                    decision.reason,
                )
        counts = Counter(d.outcome for d in decisions if d.task_id)
        if counts:
            logger.info("catch-up: %s", ", ".join(f"{n} {o}" for o, n in sorted(counts.items())))
