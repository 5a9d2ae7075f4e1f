"""Engines: one function builds them, per process, from a URL (never at import time)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, create_engine, event

SQLITE_BUSY_TIMEOUT_MS = 30_000  #: how long a SQLite writer waits for the lock


def make_engine(url: str, **options: Any) -> Engine:
    """An engine for ``url``; SQLite gets WAL, a busy timeout and immediate transactions."""
    if url.startswith("sqlite"):
        return _sqlite_engine(url, **options)
    # As many pooled connections as the API's thread pool runs requests at once
    # (anyio's default: 40), so none is opened and closed per request under load.
    options.setdefault("pool_size", 40)
    options.setdefault("max_overflow", 10)
    # No pre-ping (a round trip per transaction): a connection found dead raises once,
    # SQLAlchemy then replaces every pooled connection older than it, and callers retry
    # (API clients get a 503 with Retry-After; workers retry the claim and the finish).
    options.setdefault("pool_recycle", 1800)
    return create_engine(url, **options)


def _sqlite_engine(url: str, **options: Any) -> Engine:
    engine = create_engine(url, connect_args={"check_same_thread": False}, **options)

    @event.listens_for(engine, "connect")
    def _configure(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy, not the driver, open transactions, so that "begin" below
        # can take the write lock up front: a deferred transaction that later
        # upgrades to a writer fails at once with "database is locked" instead of
        # waiting for the busy timeout.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin_immediate(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine
