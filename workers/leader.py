"""One active scheduler: a PostgreSQL advisory lock held by the leader's connection.

The lock lives as long as the leader's session: if the process dies, PostgreSQL
drops it and a waiting scheduler takes over at its next attempt (every second).
SQLite has no such lock; run one scheduler there (``jobplane dev`` does).
"""

from __future__ import annotations

import logging

from sqlalchemy import Connection, Engine, func, select, text

logger = logging.getLogger(__name__)

#: The advisory lock key of the scheduler ("jobplane" in ASCII, as a 63-bit number).
SCHEDULER_LOCK = 0x6A6F62706C616E65


class LeaderLock:
    """``acquire()`` is True while this process is the leader."""

    def __init__(self, engine: Engine, key: int = SCHEDULER_LOCK) -> None:
        self.engine = engine
        self.key = key
        self._conn: Connection | None = None

    def acquire(self) -> bool:
        if self.engine.dialect.name != "postgresql":
            return True
        if self._conn is not None:
            if self._alive(self._conn):
                return True
            logger.warning("lost the scheduler lock's connection; trying to take it again")
            self._drop()
        conn = self.engine.connect()
        if conn.execute(select(func.pg_try_advisory_lock(self.key))).scalar():
            conn.commit()
            self._conn = conn
            logger.info("this scheduler is the leader")
            return True
        conn.rollback()
        conn.close()
        return False

    @staticmethod
    def _alive(conn: Connection) -> bool:
        try:
            conn.execute(text("SELECT 1"))
            conn.commit()
        except Exception:
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
            finally:
                self._conn.close()
                self._conn = None
