"""Every connection has timeouts and keepalives; a database that fails answers 503."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator

import httpx
import psycopg
import pytest
from sqlalchemy import Connection, Engine, func, select, text
from sqlalchemy.exc import OperationalError

from jobplane.broker.factory import make_broker
from jobplane.db import engine_from_settings, make_engine
from jobplane.outbox.notifications import PostgresWakeup
from jobplane.settings import Settings
from jobplane.timeouts import Keepalive, RedisTimeouts
from tests import services

SERVER_SETTINGS = (
    "statement_timeout",
    "idle_in_transaction_session_timeout",
    "tcp_keepalives_idle",
    "tcp_keepalives_interval",
    "tcp_keepalives_count",
    "tcp_user_timeout",
    "plan_cache_mode",
)


def shown(conn: Connection, names: tuple[str, ...] = SERVER_SETTINGS) -> dict[str, str]:
    return {name: str(conn.execute(text(f"SHOW {name}")).scalar()) for name in names}


@pytest.fixture
def fast_settings(pg_url: str, redis_url: str) -> Settings:
    return Settings(
        database_url=pg_url,
        broker_url=redis_url,
        db_statement_timeout=0.5,
        db_idle_in_transaction_timeout=7,
        tcp_keepalive_idle=3,
        tcp_keepalive_interval=1,
        tcp_keepalive_count=4,
        tcp_user_timeout=6,
    )


@pytest.fixture
def fast_engine(fast_settings: Settings) -> Iterator[Engine]:
    engine = engine_from_settings(fast_settings)
    yield engine
    engine.dispose()


def terminate_other_sessions(database: str) -> int:
    """pg_terminate_backend of every session on ``database`` (the test's own) but ours."""
    with psycopg.connect(services.PG_ADMIN_URL, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = %s AND pid <> pg_backend_pid()",
            (database,),
        ).fetchall()
    return len(rows)


def test_every_postgres_connection_tells_the_server_its_timeouts_and_keepalives(
    fast_engine: Engine,
) -> None:
    with fast_engine.connect() as conn:
        values = shown(conn)
    assert values == {
        "statement_timeout": "500ms",
        "idle_in_transaction_session_timeout": "7s",
        "tcp_keepalives_idle": "3",
        "tcp_keepalives_interval": "1",
        "tcp_keepalives_count": "4",
        "tcp_user_timeout": "6000",
        "plan_cache_mode": "force_custom_plan",  # the existing option is kept
    }


def test_settings_in_the_url_win_over_the_defaults(pg_url: str) -> None:
    url = f"{pg_url}?options=-c%20statement_timeout%3D1234&application_name=mine"
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            values = shown(conn, ("statement_timeout", "application_name", "tcp_user_timeout"))
    finally:
        engine.dispose()
    assert values == {
        "statement_timeout": "1234ms",
        "application_name": "mine",
        "tcp_user_timeout": "10000",
    }


def test_a_statement_longer_than_the_statement_timeout_is_cancelled(fast_engine: Engine) -> None:
    with pytest.raises(OperationalError, match="statement timeout"):
        with fast_engine.connect() as conn:
            conn.execute(select(func.pg_sleep(2)))


def test_the_relays_listen_connection_has_the_engines_timeouts(fast_engine: Engine) -> None:
    wakeup = PostgresWakeup(fast_engine)
    try:
        assert wakeup._listen()  # it has just begun to listen
        listen = wakeup._conn
        assert listen is not None
        values = {
            name: str(listen.execute(f"SHOW {name}").fetchone()[0])  # type: ignore[index]
            for name in ("tcp_user_timeout", "tcp_keepalives_idle")
        }
    finally:
        wakeup.close()
    assert values == {"tcp_user_timeout": "6000", "tcp_keepalives_idle": "3"}


def test_the_brokers_redis_connections_have_timeouts_and_keepalives(redis_url: str) -> None:
    timeouts = RedisTimeouts(connect=2, socket=3, keepalive=Keepalive(user_timeout=4))
    broker = make_broker(redis_url, timeouts=timeouts)
    pool = broker.client.connection_pool  # type: ignore[attr-defined]
    connection = pool.get_connection()
    try:
        connection.connect()
        sock = connection._sock
        assert sock.gettimeout() == 3
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == 5
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT) == 4000
        assert pool.connection_kwargs["socket_connect_timeout"] == 2
    finally:
        pool.release(connection)
        broker.close()


#: A route of each kind: reads, a long poll, submissions, an admin change, catch-up.
ROUTES = [
    ("GET", "/api/tasks/{id}", None),
    ("GET", "/api/tasks/{id}?wait=1", None),
    ("GET", "/api/admin/tasks", None),
    ("GET", "/api/admin/tasks/{id}/logs", None),
    ("GET", "/api/admin/stats", None),
    ("GET", "/api/admin/schedules", None),
    ("POST", "/api/tasks/batch", {"tasks": [{"type": "demo.noop"}]}),
    ("POST", "/api/admin/tasks/{id}/cancel", None),
    ("POST", "/api/admin/schedules/catch-up", {"dryRun": True}),
]


def test_the_api_answers_503_with_retry_after_when_no_pooled_connection_is_free(
    api_factory: Callable[..., httpx.Client], any_url: str
) -> None:
    # Given an API whose only pooled connection is taken (a database that hangs), with
    # the settings' pool timeout (SQLite too: not SQLAlchemy's 30 s)
    settings = Settings(database_url=any_url, db_pool_timeout=0.5)
    engine = engine_from_settings(settings, pool_size=1, max_overflow=0)
    api = api_factory(settings, engine=engine)
    api.timeout = httpx.Timeout(10.0)
    task_id = api.post("/api/tasks/batch", json={"tasks": [{"type": "demo.noop"}]}).json()
    held = engine.connect()
    try:
        # When a client calls a route of each kind
        responses = {
            f"{method} {path}": api.request(
                method, path.format(id=task_id["taskIds"][0]), json=body
            )
            for method, path, body in ROUTES
        }
    finally:
        held.close()
        engine.dispose()
    # Then each is told to come back, not given a 500
    for route, response in responses.items():
        assert response.status_code == 503, f"{route}: {response.text}"
        assert response.headers["Retry-After"] == "5"
        assert response.json() == {
            "error": "database_unavailable",
            "message": "every database connection is busy (the database is slow or "
            "overloaded); retry soon",
        }


def test_clients_retrying_with_their_key_through_terminated_connections_get_one_task_each(
    pg_api: httpx.Client, pg_settings: Settings
) -> None:
    # Given the API's connections are killed on the server (as a PostgreSQL restart does)
    database = pg_settings.database_url.rsplit("/", 1)[1]
    statuses: list[int] = []
    task_ids: dict[str, set[str]] = {}
    for number in range(30):
        key = f"key-{number}"
        body = {"type": "demo.noop", "params": {}}
        if number % 5 == 0:
            terminate_other_sessions(database)
        # When each client retries its submission until it is accepted
        for _ in range(20):
            response = pg_api.post("/api/tasks", json=body, headers={"Idempotency-Key": key})
            statuses.append(response.status_code)
            if response.status_code in (200, 201):
                task_ids.setdefault(key, set()).add(response.json()["taskId"])
                break
            assert response.headers.get("Retry-After") == "5", response.text
    # Then nobody got a 500, and each key got exactly one task
    assert set(statuses) <= {200, 201, 503}, statuses
    assert len(task_ids) == 30
    assert all(len(ids) == 1 for ids in task_ids.values())
