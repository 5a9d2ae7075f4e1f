"""Failures that pass: which database errors are worth waiting out, and how long to wait.

A PostgreSQL restart, a failover, a network blip, a full pool or a locked SQLite file
all end by themselves; a statement the database rejects (bad data, a bug) does not.
Callers whose write is safe to repeat (guarded UPDATEs) retry the first kind with
``Backoff`` and give up at once on the second.
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable
from typing import TypeVar

from sqlalchemy import exc

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: First pause after a failure, in s.
DEFAULT_MIN_DELAY_S = 0.1
#: Longest pause between two attempts, in s: short enough that work resumes within
#: seconds of the database coming back.
DEFAULT_MAX_DELAY_S = 2.0


def is_transient(error: BaseException) -> bool:
    """Whether ``error`` says the database was unreachable or busy, not that it refused.

    - ``OperationalError``: connection refused or reset, server shutting down, statement
      or lock timeout, SQLite's "database is locked";
    - ``InterfaceError``: the driver's connection was already closed;
    - any driver error after which SQLAlchemy invalidated the connection;
    - ``TimeoutError``: no pooled connection became free in time.
    """
    if isinstance(error, exc.TimeoutError | exc.OperationalError | exc.InterfaceError):
        return True
    return isinstance(error, exc.DBAPIError) and error.connection_invalidated


class Backoff:
    """Exponential pauses with jitter: ``min_delay``, 2×, 4× … up to ``max_delay`` (s).

    Jitter (up to a quarter of each pause) spreads the retries of many threads that
    failed together, so they do not all reconnect in the same instant.
    """

    def __init__(
        self, *, min_delay: float = DEFAULT_MIN_DELAY_S, max_delay: float = DEFAULT_MAX_DELAY_S
    ) -> None:
        self.min_delay = min_delay
        self.max_delay = max_delay
        self.failures = 0

    def next_delay(self) -> float:
        """The pause before the next attempt; each call counts one more failure."""
        # The exponent is capped so that a long outage never overflows the float.
        base: float = min(self.max_delay, self.min_delay * 2 ** min(self.failures, 32))
        self.failures += 1
        return base * (1 + random.uniform(0, 0.25))


def through_outages(
    work: Callable[[], T],
    *,
    until: threading.Event,
    what: str,
    on_failure: Callable[[], None] = lambda: None,
) -> T:
    """``work()``, called again with ``Backoff`` while it fails with a transient error.

    Gives up, raising the last error, on any other error or once ``until`` is set (a
    worker stopping); the pause is cut short when it is. ``on_failure`` runs after each
    failed attempt (to drop a held connection). Only for work that is safe to repeat.
    """
    backoff = Backoff()
    while True:
        try:
            return work()
        except Exception as error:
            if until.is_set() or not is_transient(error):
                raise
            on_failure()
            delay = backoff.next_delay()
            # One warning per outage; the retries after it would flood the log.
            log = logger.warning if backoff.failures == 1 else logger.debug
            log("%s: database unavailable, retrying until it is back: %s", what, error)
            if until.wait(delay):
                raise
