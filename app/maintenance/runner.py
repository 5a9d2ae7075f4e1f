"""``Maintenance``: runs the maintenance services while this process leads.

One thread. While the elector says this process leads, each service runs whenever its
own pass is due (each pass says when the next one is); in between, the lock is checked
every ``leader_check`` s. A standby only polls for the lock, every ``standby_poll`` s,
and a new leader runs every service at once. A service that fails is logged and tried
again after a back-off of its own; the others go on.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Sequence

import dramatiq
from sqlalchemy import Engine

from jobplane.maintenance.cleaner import Cleaner
from jobplane.maintenance.folder import CountFolder
from jobplane.maintenance.leader import LEADER_CHECK, STANDBY_POLL, Elector, maintenance_lock
from jobplane.maintenance.rescuer import Rescuer
from jobplane.maintenance.scheduler import Scheduler
from jobplane.maintenance.service import Service
from jobplane.outages import Backoff, is_transient
from jobplane.schedules import Schedule
from jobplane.settings import Settings

logger = logging.getLogger(__name__)

#: First pause after a failed pass of a service, in s; it doubles with each failure.
DEFAULT_MIN_RETRY = 0.5
#: Longest pause between two failed passes of a service, in s.
DEFAULT_MAX_RETRY = 5.0


class Maintenance:
    """Runs ``services`` while ``elector`` says this process is the leader.

    ``leader_check`` (default 2 s) and ``standby_poll`` (1 s): see ``leader``.
    ``min_retry`` and ``max_retry`` (0.5 s, 5 s): the back-off of a failing service.
    ``clock``: the monotonic clock that passes are timed by.
    """

    def __init__(
        self,
        elector: Elector,
        services: Sequence[Service],
        *,
        leader_check: float = LEADER_CHECK,
        standby_poll: float = STANDBY_POLL,
        min_retry: float = DEFAULT_MIN_RETRY,
        max_retry: float = DEFAULT_MAX_RETRY,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.elector = elector
        self.services = list(services)
        self.leader_check = leader_check
        self.standby_poll = standby_poll
        self.min_retry = min_retry
        self.max_retry = max_retry
        self.clock = clock
        #: When each service's next pass is due (none: at once), while this process leads.
        self._due: dict[str, float] = {}
        #: The back-off of each service whose last pass failed.
        self._failing: dict[str, Backoff] = {}
        self._elector_failed = False
        self._stopped = threading.Event()

    def run(self) -> None:
        """Lead (or wait to) and run the services as they fall due, until ``stop()``."""
        try:
            while not self._stopped.is_set():
                self._stopped.wait(self.step())
        finally:
            self.elector.release()

    def stop(self) -> None:
        self._stopped.set()

    def step(self) -> float:
        """Check the lead, then run each service that is due; returns the seconds to
        wait before the next step."""
        if not self._lead():
            self._due.clear()  # a new leadership runs every service at once
            return self.standby_poll
        for service in self.services:
            if self._stopped.is_set():
                break
            if self.clock() >= self._due.get(service.name, -math.inf):
                self._due[service.name] = self.clock() + self._run(service)
        soonest = min(self._due.values(), default=math.inf)
        return max(0.0, min(self.leader_check, soonest - self.clock()))

    def _lead(self) -> bool:
        """Whether this process leads; an elector that cannot reach the database is an
        outage for every service (a standby's services too: it may lead next)."""
        try:
            leading = self.elector.acquire()
        except Exception as error:
            if not self._elector_failed:
                logger.warning("maintenance cannot reach the database to lead: %s", error)
            self._elector_failed = True
            self._note_outage()
            return False
        self._elector_failed = False
        for service in self.services:
            service.note_reachable()
        return leading

    def _run(self, service: Service) -> float:
        """One pass of ``service``; returns the seconds until its next one."""
        try:
            wait = service.run_once()
        except Exception as error:
            if is_transient(error):
                self._note_outage()
            backoff = self._failing.setdefault(
                service.name, Backoff(min_delay=self.min_retry, max_delay=self.max_retry)
            )
            delay = backoff.next_delay()
            if backoff.failures == 1:
                logger.exception(
                    "maintenance: the %s failed; retrying in %.1f s", service.name, delay
                )
            else:
                logger.warning(
                    "maintenance: the %s failed again (%s); retrying in %.1f s",
                    service.name,
                    error,
                    delay,
                )
            return delay
        if self._failing.pop(service.name, None) is not None:
            logger.info("maintenance: the %s works again", service.name)
        return wait

    def _note_outage(self) -> None:
        for service in self.services:
            service.note_outage()


def maintenance_for(
    engine: Engine,
    broker: dramatiq.Broker,
    settings: Settings,
    schedules: Sequence[Schedule],
    *,
    role: str,
) -> Maintenance:
    """A candidate with every service, configured from ``settings``; ``role`` names the
    process ("relay", "scheduler", "dev") in the log line of a new leader."""
    return Maintenance(
        Elector(engine, role=role, key=maintenance_lock(settings.db_schema)),
        [
            # The scheduler first: a new leader's catch-up is the most awaited pass.
            Scheduler(engine, settings, schedules),
            Rescuer.from_settings(engine, broker, settings),
            Cleaner.from_settings(engine, settings, schedules),
            CountFolder(engine),
        ],
    )
