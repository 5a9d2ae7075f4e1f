"""The count folder: keeps the task counts cheap to read.

Triggers append a row to ``jobplane_task_counts`` for every change to the tasks; every
``interval`` s (5 by default) the leader folds those rows into one per key
(``store.counts.fold``), so that the admin stats and ``/metrics`` add up about as many
rows as there are (type, queue, schedule, status) keys, plus a few seconds of changes.
A pass is one short transaction, whatever the table of tasks holds.
"""

from __future__ import annotations

import logging

from sqlalchemy import Engine

from jobplane import store
from jobplane.maintenance.service import Service

logger = logging.getLogger(__name__)

DEFAULT_INTERVAL = 5.0  #: seconds between two folds


class CountFolder(Service):
    """Folds the task counts every ``interval`` s."""

    name = "count folder"

    def __init__(self, engine: Engine, *, interval: float = DEFAULT_INTERVAL) -> None:
        self.engine = engine
        self.interval = interval

    def run_once(self) -> float:
        with self.engine.begin() as conn:
            before, after = store.counts.fold(conn)
        logger.debug("task counts: folded %d row(s) into %d", before, after)
        return self.interval
