"""Engines: one function builds them, per process, from a URL (never at import time)."""

from __future__ import annotations

import contextvars
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeVar

import psycopg
from sqlalchemy import Connection, Engine, create_engine, event, func, make_url, select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from jobplane.timeouts import PostgresTimeouts

if TYPE_CHECKING:
    from jobplane.settings import Settings

logger = logging.getLogger(__name__)

T = TypeVar("T")

SQLITE_BUSY_TIMEOUT_MS = 30_000  #: how long a SQLite writer waits for the lock


def make_engine(
    url: str,
    *,
    timeouts: PostgresTimeouts | None = None,
    schema: str | None = None,
    **options: Any,
) -> Engine:
    """An engine for ``url``; SQLite gets WAL, a busy timeout, and write transactions that
    take the write lock up front while reads do not (``_sqlite_engine``).

    On PostgreSQL every connection gets ``timeouts`` (default: ``PostgresTimeouts()``);
    a process passes ``PostgresTimeouts.from_settings(settings)``. SQLite takes only its
    pool timeout. With ``schema``, every
    statement built from the models names its tables in that schema (``in_schema``).
    """
    timeouts = timeouts or PostgresTimeouts()
    if url.startswith("sqlite"):
        if schema is not None:
            raise ValueError("a schema is for PostgreSQL; SQLite has none")
        if make_url(url).database not in (None, "", ":memory:"):  # a file: a pool of its own
            # As on PostgreSQL, rather than SQLAlchemy's 30 s: a full pool answers 503 soon.
            options.setdefault("pool_timeout", timeouts.pool)
        return _sqlite_engine(url, **options)
    options = _postgres_options(url, timeouts, options)
    return create_engine(url, **in_schema(schema, options))


def engine_from_settings(settings: Settings, **options: Any) -> Engine:
    """This process's engine: ``settings.database_url`` with the settings' timeouts and
    schema."""
    return make_engine(
        settings.database_url,
        timeouts=PostgresTimeouts.from_settings(settings),
        schema=settings.db_schema,
        **options,
    )


def make_async_engine(
    url: str,
    *,
    timeouts: PostgresTimeouts | None = None,
    schema: str | None = None,
    **options: Any,
) -> AsyncEngine:
    """An asyncio engine for a PostgreSQL ``url`` (psycopg's async connections).

    For the API's submissions, written from the event loop without a thread hop; the
    statements are the store's own, run through ``AsyncConnection.run_sync``.
    """
    options = _postgres_options(url, timeouts or PostgresTimeouts(), options)
    return create_async_engine(url, **in_schema(schema, options))


def in_schema(schema: str | None, options: dict[str, Any]) -> dict[str, Any]:
    """Engine ``options`` that put every table of the models (schema None) in ``schema``.

    SQLAlchemy's schema translation rewrites the statements it compiles; SQL compiled
    ahead of time and run with ``exec_driver_sql`` must ask ``schema_of`` itself.
    """
    if schema is not None:
        execution = dict(options.get("execution_options", {}))
        execution["schema_translate_map"] = {None: schema}
        options = {**options, "execution_options": execution}
    return options


@contextmanager
def jobplane_schema(conn: Connection, schema: str | None) -> Iterator[Connection]:
    """``conn``, for the block, with jobplane's tables in ``schema``; as it was after.

    For jobplane's statements on a connection jobplane did not make (the caller's own
    Session or Connection, in the caller's transaction): its other statements, the
    caller's own tables, must keep their own schema. The translation is set on the
    connection itself (SQLAlchemy 2 has no branched connections) and restored after.
    """
    if schema is None or schema_of(conn) == schema:
        yield conn
        return
    before = conn.get_execution_options().get("schema_translate_map")
    conn.execution_options(schema_translate_map={**(before or {}), None: schema})
    try:
        yield conn
    finally:
        conn.execution_options(schema_translate_map=before)


def schema_of(conn: Connection | Engine) -> str | None:
    """The schema ``conn`` puts jobplane's tables in (None: the default schema)."""
    translate = conn.get_execution_options().get("schema_translate_map") or {}
    schema: str | None = translate.get(None)
    return schema


def _postgres_options(
    url: str, timeouts: PostgresTimeouts, options: dict[str, Any]
) -> dict[str, Any]:
    # As many pooled connections as the API's thread pool runs requests at once
    # (anyio's default: 40), so none is opened and closed per request under load.
    options.setdefault("pool_size", 40)
    options.setdefault("max_overflow", 10)
    # A caller finding every connection taken (the database hangs) gives up soon: the
    # API answers 503 instead of holding its clients for SQLAlchemy's default 30 s.
    options.setdefault("pool_timeout", timeouts.pool)
    # No pre-ping (a round trip per transaction): a connection found dead raises once,
    # SQLAlchemy then replaces every pooled connection older than it, and callers retry
    # (API clients get a 503 with Retry-After; workers retry the claim and the finish).
    options.setdefault("pool_recycle", 1800)
    # psycopg prepares a statement after its 5th run, and PostgreSQL then keeps one
    # generic plan for it, costed with the statistics of that moment. A tasks table that
    # was tiny then (a new install, a burst after a quiet spell) keeps getting sequential
    # scans per claim and per relay batch as it grows, already slow at a few thousand
    # rows. A custom plan per run costs far less than that risk.
    options.setdefault("connect_args", {"options": "-c plan_cache_mode=force_custom_plan"})
    options["connect_args"] = connect_args(url, timeouts, options["connect_args"])
    return options


def connect_args(url: str, timeouts: PostgresTimeouts, given: dict[str, Any]) -> dict[str, Any]:
    """libpq parameters of a connection: the timeouts, then ``given``, then the URL's.

    Parameters in the URL's query (``?connect_timeout=10``) win over the timeouts, and
    ``options`` of all three are joined, so the URL's own ``-c`` settings are kept.
    """
    query = make_url(url).query
    params = {k: v for k, v in timeouts.libpq_params().items() if k not in query}
    params.update(given)
    url_options = query.get("options")
    parts = [timeouts.server_options(), given.get("options", "")]
    parts.append(url_options if isinstance(url_options, str) else " ".join(url_options or ()))
    params["options"] = " ".join(part for part in parts if part)
    return params


def listening_connection(engine: Engine, channel: str) -> psycopg.Connection[tuple[object, ...]]:
    """A PostgreSQL connection that LISTENs on ``channel``, in autocommit.

    Of the engine's own making, so with its timeouts and keepalives (a LISTEN
    connection without them would wait on a vanished server for good), and taken out
    of the pool for good: it keeps its LISTEN. Close it with ``close_quietly``.
    """
    pooled = engine.raw_connection()
    conn = pooled.driver_connection
    pooled.detach()
    assert isinstance(conn, psycopg.Connection)
    try:
        conn.autocommit = True
        conn.execute(f"LISTEN {channel}")
    except BaseException:
        close_quietly(conn)
        raise
    return conn


def close_quietly(conn: psycopg.Connection[tuple[object, ...]] | None) -> None:
    """Close ``conn``, also one that failed: a failure need not have closed it (a
    timeout does not), and one left open holds its server connection until collected."""
    if conn is not None:
        try:
            conn.close()
        except psycopg.Error:
            pass


def local_statement_timeout(conn: Connection, seconds: float) -> None:
    """Give the current transaction its own statement timeout (0: none); one round trip.

    For work whose statements need longer (or shorter) than the connection's default;
    PostgreSQL only (SQLite has no statement timeout).
    """
    if conn.dialect.name == "postgresql":
        ms = str(int(seconds * 1000))
        conn.execute(select(func.set_config("statement_timeout", ms, True)))


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

    # A transaction asked for with begin() (engine.begin(), conn.begin(), a Session's)
    # takes the write lock up front: one that read first and then wrote would have to
    # upgrade its lock, and that fails at once with "database is locked" when another
    # writer went first, instead of waiting for the busy timeout. A transaction that a
    # statement begins by itself (engine.connect(), then a read: SQLAlchemy's autobegin)
    # reads without it, beside a writer, from WAL's snapshot.
    autobeginning: contextvars.ContextVar[Connection | None] = contextvars.ContextVar(
        "jobplane_sqlite_autobegin", default=None
    )

    @event.listens_for(engine, "before_execute")
    def _note_autobegin(connection: Connection, *_args: Any) -> None:
        autobeginning.set(None if connection.in_transaction() else connection)

    @event.listens_for(engine, "begin")
    def _begin(connection: Connection) -> None:
        deferred = autobeginning.get() is connection
        autobeginning.set(None)
        connection.exec_driver_sql("BEGIN" if deferred else "BEGIN IMMEDIATE")

    return engine


def transaction(
    engine: Engine,
    work: Callable[[Connection], T],
    *,
    disconnect_retries: int = 0,
    autocommit: bool = False,
) -> T:
    """Run ``work`` in a transaction, again on a fresh connection if the first was dead.

    Engines do not ping connections before use (a round trip per transaction): after a
    database restart the first use of a pooled connection fails, and SQLAlchemy then
    replaces the whole pool. Callers whose ``work`` is safe to repeat pass
    ``disconnect_retries`` so that one dead connection does not cost them the write.

    ``autocommit`` is for ``work`` that is one statement, atomic on its own: it then
    commits as it runs, one round trip instead of two (statement, then COMMIT).
    """

    def once() -> T:
        if autocommit:
            with engine.connect() as conn:
                return work(conn.execution_options(isolation_level="AUTOCOMMIT"))
        with engine.begin() as conn:
            return work(conn)

    return _retrying(once, disconnect_retries)


class HeldConnection:
    """One connection kept across transactions, for a writer that runs many small ones.

    ``transaction`` checks a connection out of the pool and back in for each call; that
    (and switching it to autocommit and back) cost a writer about as much CPU as the
    statement itself. A writer thread holds one of these instead; it is replaced when
    found dead, with ``transaction``'s retries. Not thread-safe: one thread uses it.
    """

    def __init__(self, engine: Engine, *, disconnect_retries: int = 0, autocommit: bool = False):
        self.engine = engine
        self.disconnect_retries = disconnect_retries
        self.autocommit = autocommit
        self._conn: Connection | None = None

    def run(self, work: Callable[[Connection], T]) -> T:
        """``transaction(engine, work, …)`` on the held connection."""

        def once() -> T:
            conn = self._connection()
            if self.autocommit:
                return work(conn)
            with conn.begin():
                return work(conn)

        return _retrying(once, self.disconnect_retries, on_disconnect=self.close)

    def close(self) -> None:
        """Give the connection back to the pool (a later ``run`` takes another)."""
        if self._conn is not None:
            conn, self._conn = self._conn, None
            conn.close()

    def _connection(self) -> Connection:
        if self._conn is None:
            conn = self.engine.connect()
            if self.autocommit:
                conn = conn.execution_options(isolation_level="AUTOCOMMIT")
            self._conn = conn
        return self._conn


def _retrying(
    once: Callable[[], T], retries: int, on_disconnect: Callable[[], None] = lambda: None
) -> T:
    """``once()``, called again (up to ``retries`` times) while it fails on a dead connection."""
    for attempt in range(retries + 1):
        try:
            return once()
        except DBAPIError as error:
            if not error.connection_invalidated:
                raise
            on_disconnect()
            if attempt == retries:
                raise
            logger.warning("database connection lost; retrying (%s)", error.orig)
            time.sleep(0.2 * 2**attempt)
    raise AssertionError("unreachable")
