"""The cleaner: retention, for finished tasks (with their logs and outbox rows), for the
runs ledger, and for the workers long gone.

Every ``interval`` s (an hour by default), and at once when a process starts to lead:
so each pass deletes about an hour's worth of expired tasks rather than a day's in one
burst, and no "last clean-up" needs storing for a new leader to know whether one is
due. A pass is idempotent, and cheap when nothing has expired (two indexed statements).
It deletes in batches, one transaction each, for at most ``pass_budget`` s before it
lets the leader's other services run (they share its thread); the next pass, due at
once, goes on.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Engine

from jobplane import store
from jobplane.db import local_statement_timeout
from jobplane.maintenance import catchup
from jobplane.maintenance.service import Service
from jobplane.models import utcnow
from jobplane.schedules import Schedule
from jobplane.settings import Settings

logger = logging.getLogger(__name__)

DEFAULT_RETENTION_DAYS = 7.0  #: days a finished task is kept (``JOBPLANE_RETENTION_DAYS``)
DEFAULT_INTERVAL = 3600.0  #: seconds between passes (``JOBPLANE_RETENTION_INTERVAL``)
#: Tasks deleted per transaction (``JOBPLANE_RETENTION_BATCH_SIZE``): small batches keep
#: locks on a busy table short.
DEFAULT_BATCH_SIZE = 500
#: Seconds one pass goes on deleting before the leader's other services get their turn.
DEFAULT_PASS_BUDGET = 2.0
#: Statement timeout of the deletes, in s (0: none; ``JOBPLANE_MAINTENANCE_STATEMENT_TIMEOUT``):
#: a batch over tasks with many logs may take longer than an ordinary statement.
DEFAULT_STATEMENT_TIMEOUT = 600.0
#: A worker not seen for this long is forgotten: its name (host:pid) will not come back.
WORKER_MEMORY = timedelta(days=1)
#: Workflows one retention transaction deletes, each with all of its steps.
WORKFLOWS_PER_BATCH = 20


@dataclass(frozen=True)
class Cleaned:
    """What one clean-up deleted."""

    deleted_tasks: int
    forgotten_runs: int


class Cleaner(Service):
    """Deletes finished tasks older than ``retention_days`` and the ledger's runs outside
    every schedule's catch-up window (``catchup.ledger_cutoff``).

    Options, in days, s or rows: ``retention_days`` (default 7), ``interval`` (3,600),
    ``batch_size`` (500), ``pass_budget`` (2), ``statement_timeout`` (600).
    """

    name = "cleaner"

    def __init__(
        self,
        engine: Engine,
        schedules: Sequence[Schedule],
        *,
        retention_days: float = DEFAULT_RETENTION_DAYS,
        interval: float = DEFAULT_INTERVAL,
        batch_size: int = DEFAULT_BATCH_SIZE,
        pass_budget: float = DEFAULT_PASS_BUDGET,
        statement_timeout: float = DEFAULT_STATEMENT_TIMEOUT,
        clock: Callable[[], datetime] = utcnow,
        timer: Callable[[], float] = time.monotonic,
    ) -> None:
        self.engine = engine
        self.schedules = list(schedules)
        self.retention = timedelta(days=retention_days)
        self.interval = interval
        self.batch_size = batch_size
        self.pass_budget = pass_budget
        self.statement_timeout = statement_timeout
        self.clock = clock
        self.timer = timer
        #: Tasks deleted by the passes of the clean-up under way (one cut in turns).
        self._deleted = 0

    @classmethod
    def from_settings(
        cls, engine: Engine, settings: Settings, schedules: Sequence[Schedule]
    ) -> Cleaner:
        """A cleaner with the retention, interval and batch size of ``settings``."""
        return cls(
            engine,
            schedules,
            retention_days=settings.retention_days,
            interval=settings.retention_interval,
            batch_size=settings.retention_batch_size,
            statement_timeout=settings.maintenance_statement_timeout,
        )

    def run_once(self) -> float:
        """Delete for up to ``pass_budget`` s; at once again if expired tasks remain."""
        if not self._delete_expired(until=self.timer() + self.pass_budget):
            return 0.0
        self._finish()
        return self.interval

    def clean(self) -> Cleaned:
        """A whole clean-up at once, however long it takes."""
        self._delete_expired(until=None)
        return self._finish()

    def _delete_expired(self, *, until: float | None) -> bool:
        """Delete batches of expired tasks; True once none is left."""
        cutoff = self.clock() - self.retention
        while until is None or self.timer() < until:
            with self.engine.begin() as conn:
                local_statement_timeout(conn, self.statement_timeout)
                batch = store.retention.delete_finished_before(conn, cutoff, self.batch_size)
            self._deleted += batch
            if batch < self.batch_size:
                return True
        return False

    def _delete_expired_workflows(self, cutoff: datetime) -> int:
        """Delete the workflows that ended before ``cutoff``, a few per transaction (each
        goes with up to ``MAX_STEPS`` steps)."""
        deleted = 0
        while True:
            with self.engine.begin() as conn:
                local_statement_timeout(conn, self.statement_timeout)
                batch = store.workflows.delete_finished_before(conn, cutoff, WORKFLOWS_PER_BATCH)
            deleted += batch
            if batch < WORKFLOWS_PER_BATCH:
                return deleted

    def _finish(self) -> Cleaned:
        """Trim the runs ledger, log, and start the count of the next clean-up afresh."""
        now = self.clock()
        # Independent of the retention: the ledger keeps what catch-up may still look at.
        runs_cutoff = catchup.ledger_cutoff(self.schedules, now)
        workflows = self._delete_expired_workflows(self.clock() - self.retention)
        with self.engine.begin() as conn:
            forgotten = store.schedules.forget_runs_before(conn, runs_cutoff, now)
            store.workers.forget_before(conn, now - WORKER_MEMORY)
        if workflows:
            logger.info("retention: deleted %d workflow(s) with their steps", workflows)
        cleaned, self._deleted = Cleaned(self._deleted, forgotten), 0
        log = logger.info if cleaned.deleted_tasks or forgotten else logger.debug
        log(
            "retention: deleted %d finished task(s) older than %s, forgot %d schedule run(s)"
            " that fired before %s",
            cleaned.deleted_tasks,
            self.retention,
            forgotten,
            runs_cutoff.isoformat(),
        )
        return cleaned
