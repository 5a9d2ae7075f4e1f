"""The scheduler: records every schedule's runs as they fall due.

Each pass is a catch-up as of now (``jobplane.maintenance.catchup``): fire times that
arrived are recorded as tasks, unique on (schedule, fire time). So the catch-up of a
new leader, an ordinary pass, a restart inside a pass, and two leaders for a moment
all reduce to the same idempotent step. Periodiq's own scheduler loop (host timezone
only, nothing stored, ticks lost while it is down) and its middleware (which drops
periodic messages older than 30 s) are not used; periodiq's ``cron()`` declares
schedules.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import datetime

from sqlalchemy import Engine

from jobplane.maintenance import catchup
from jobplane.maintenance.service import Service
from jobplane.models import utcnow
from jobplane.schedules import Schedule
from jobplane.settings import Settings

logger = logging.getLogger(__name__)

#: Seconds between passes at most, so that a clock set forward or back is seen.
MAX_SLEEP = 30.0
#: How long after a fire time the pass for it starts, in s: the run is due when recorded.
FIRE_MARGIN = 0.01


class Scheduler(Service):
    """Turns due fire times into tasks; each pass waits for the next fire time.

    ``max_sleep``: longest wait between two passes, in s (default ``MAX_SLEEP``, 30).
    """

    name = "scheduler"

    def __init__(
        self,
        engine: Engine,
        settings: Settings,
        schedules: Sequence[Schedule],
        *,
        clock: Callable[[], datetime] = utcnow,
        max_sleep: float = MAX_SLEEP,
    ) -> None:
        self.engine = engine
        self.settings = settings
        self.schedules = list(schedules)
        self.clock = clock
        self.max_sleep = max_sleep

    def run_once(self) -> float:
        self.tick()
        return self.seconds_to_next_fire(self.clock()) + FIRE_MARGIN

    def tick(self, now: datetime | None = None) -> list[catchup.Decision]:
        """Record every run due as of ``now``; returns the decisions."""
        now = now or self.clock()
        with self.engine.begin() as conn:
            decisions = catchup.catch_up(conn, self.schedules, self.settings, now)
        self._log(decisions)
        return decisions

    def seconds_to_next_fire(self, now: datetime) -> float:
        upcoming = [s.next_fire_time(now) for s in self.schedules]
        soonest = min((fire for fire in upcoming if fire is not None), default=None)
        if soonest is None:
            return self.max_sleep
        return max(0.0, min(self.max_sleep, (soonest - now).total_seconds()))

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
