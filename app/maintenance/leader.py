"""One maintenance leader: a PostgreSQL advisory lock held by the leader's connection.

Every relay and scheduler process is a candidate. The lock lives as long as the
leader's session: if the process dies, PostgreSQL drops it and a standby takes over at
its next attempt (every ``STANDBY_POLL`` s). SQLite has no such lock; there the one
process (``jobplane dev``) is the leader.

Why a session lock and not a lease row with an expiry (as River's leader table):
what a leader does is idempotent writes to the same database (runs are unique on
schedule and fire time, recoveries are guarded UPDATEs), so a leader that cannot reach
the database cannot act, and a brief overlap of two leaders records nothing twice.
What matters is that a partitioned leader's lock is freed soon, and that the leader
learns soon that it lost it; both follow from the connections' keepalives
(``jobplane.timeouts``):

- PostgreSQL is told the keepalive settings for the session, so it ends a silent
  client's session, and with it the lock, within ``tcp_user_timeout`` (or keepalive
  idle + interval × count): ~10 s by default; the standby takes over within a second
  after that;
- the leader verifies its lock's connection every ``LEADER_CHECK`` s, with a short
  statement timeout; on a partition the check fails within the same ~10 s (client
  keepalives), and the leader steps down (it is a standby again until it takes the
  lock anew).

A lease row would bound the overlap by clocks instead, at the cost of a table, a
renewal write per interval, and a lease length that is the takeover time anyway.
"""

from __future__ import annotations

import hashlib
import logging

from sqlalchemy import Connection, Engine, func, select

from jobplane.db import local_statement_timeout

logger = logging.getLogger(__name__)

#: The advisory lock key of the maintenance leader ("jobplane" in ASCII, as a 63-bit
#: number): the scheduler's key before maintenance had one leader, so that a scheduler
#: of an older version and a candidate of this one never lead at once.
MAINTENANCE_LOCK = 0x6A6F62706C616E65


def maintenance_lock(schema: str | None) -> int:
    """The leader's lock key for jobplane's objects in ``schema`` (None: the default).

    Advisory locks belong to the whole database, while ``JOBPLANE_DB_SCHEMA`` lets two
    installations share one: each schema gets a key of its own, so one installation's
    leader never keeps the other's maintenance from running.
    """
    if schema is None:
        return MAINTENANCE_LOCK
    digest = hashlib.blake2b(f"jobplane:{schema}".encode(), digest_size=8).digest()
    # pg_try_advisory_lock takes a signed 64-bit key.
    return int.from_bytes(digest, "big", signed=True)


#: Longest the server may take to answer the leader's check of its lock, in s: an
#: overloaded or stuck server makes the leader step down rather than wait.
CHECK_TIMEOUT = 2.0
#: Seconds between the leader's checks of its lock, also while every service waits for
#: its next pass: a leader cut off from the database steps down within about this long
#: plus the connection's keepalive timeout.
LEADER_CHECK = 2.0
#: Seconds between a standby's attempts to take the lock.
STANDBY_POLL = 1.0


class Elector:
    """``acquire()`` is True while this process is the leader.

    ``role`` names the process in the log line a new leader writes ("this scheduler
    is the leader", "this relay is the leader").
    """

    def __init__(self, engine: Engine, *, role: str, key: int = MAINTENANCE_LOCK) -> None:
        self.engine = engine
        self.role = role
        self.key = key
        self._conn: Connection | None = None

    @property
    def leading(self) -> bool:
        """Whether the last ``acquire()`` found this process the leader."""
        return self._conn is not None or self.engine.dialect.name != "postgresql"

    def acquire(self) -> bool:
        """Verify the lock if held (stepping down if that fails), else try to take it."""
        if self.engine.dialect.name != "postgresql":
            return True
        if self._conn is not None:
            if self._alive(self._conn):
                return True
            logger.warning("lost the maintenance lock's connection: stepping down")
            self._drop()
        conn = self.engine.connect()
        try:
            taken = conn.execute(select(func.pg_try_advisory_lock(self.key))).scalar()
            conn.commit()
        except Exception:
            conn.invalidate()
            conn.close()
            raise
        if taken:
            self._conn = conn
            logger.info("this %s is the leader: it runs maintenance", self.role)
            return True
        conn.close()
        return False

    @staticmethod
    def _alive(conn: Connection) -> bool:
        """One round trip on the lock's session; False if the session is gone.

        The session holds the lock for as long as it lives, so a live session is a
        held lock. The statement timeout is set for this transaction only.
        """
        try:
            local_statement_timeout(conn, CHECK_TIMEOUT)
            conn.commit()
        except Exception as error:
            logger.warning("the maintenance lock's connection failed its check: %s", error)
            return False
        return True

    def _drop(self) -> None:
        if self._conn is not None:
            try:
                self._conn.invalidate()
                self._conn.close()
            except Exception:
                logger.debug("closing a dead connection failed", exc_info=True)
            self._conn = None

    def release(self) -> None:
        if self._conn is not None:
            try:
                self._conn.execute(select(func.pg_advisory_unlock(self.key)))
                self._conn.commit()
            except Exception:
                logger.warning("could not release the maintenance lock; the session ends it")
                self._conn.invalidate()
            finally:
                self._conn.close()
                self._conn = None
