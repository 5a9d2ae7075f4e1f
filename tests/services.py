"""The real servers the tests use: PostgreSQL and Redis on 127.0.0.1, started if stopped.

A server that cannot be reached or started fails the run with a message saying what
to start; PostgreSQL and Redis tests are never silently skipped.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import time

import psycopg
import redis

PG_ADMIN_URL = os.environ.get("JOBPLANE_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_HOST, REDIS_PORT = "127.0.0.1", 6379
#: The Redis database the tests own; FLUSHDB'd around each test. Two test runs at
#: once on one machine need different ones (JOBPLANE_TEST_REDIS_DB).
REDIS_DB = int(os.environ.get("JOBPLANE_TEST_REDIS_DB", "9"))

START_PG = "pg_ctlcluster --skip-systemctl-redirect {version} main start"
START_REDIS = "redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save '' --appendonly no"


def _postgres_up() -> bool:
    try:
        psycopg.connect(PG_ADMIN_URL, connect_timeout=2).close()
    except psycopg.OperationalError:
        return False
    return True


def _redis_up() -> bool:
    client = redis.Redis(REDIS_HOST, REDIS_PORT, socket_connect_timeout=2)
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
    finally:
        client.close()


def _start(command: str) -> None:
    subprocess.run(command, shell=True, check=False, capture_output=True, timeout=60)


def _wait(probe: object, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if probe():  # type: ignore[operator]
            return True
        time.sleep(0.2)
    return False


def ensure_postgres() -> None:
    if _postgres_up():
        return
    versions = [os.path.basename(path) for path in glob.glob("/etc/postgresql/*")]
    if versions and shutil.which("pg_ctlcluster"):
        _start(START_PG.format(version=versions[0]))
        if _wait(_postgres_up, 30):
            return
    raise RuntimeError(
        f"PostgreSQL is not reachable at {PG_ADMIN_URL} and could not be started. Start it "
        f"(e.g. `{START_PG.format(version='$(ls /etc/postgresql)')}`) or set JOBPLANE_TEST_PG."
    )


def ensure_redis() -> None:
    if _redis_up():
        return
    if shutil.which("redis-server"):
        _start(START_REDIS)
        if _wait(_redis_up, 15):
            return
    raise RuntimeError(
        f"Redis is not reachable at {REDIS_HOST}:{REDIS_PORT} and could not be started. "
        f"Start it: `{START_REDIS}`."
    )


def redis_url(db: int = REDIS_DB) -> str:
    return f"redis://{REDIS_HOST}:{REDIS_PORT}/{db}"


def redis_client(db: int = REDIS_DB) -> redis.Redis:
    return redis.Redis(REDIS_HOST, REDIS_PORT, db=db)


def pg_url(database: str) -> str:
    base = PG_ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
    return f"{base}/{database}"


def admin_execute(sql: str) -> None:
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(sql)  # type: ignore[arg-type]


class DatabaseOutage:
    """One test database made unreachable, as a server restart makes it, and back.

    The shared server stays up for everybody else: only ``database`` refuses new
    connections (``ALLOW_CONNECTIONS false``) and loses the ones it had. ``end`` (also
    on leaving the ``with`` block, whatever happened) lets connections in again.
    """

    def __init__(self, database_url: str) -> None:
        self.database = database_url.rsplit("/", 1)[1]

    def begin(self) -> None:
        admin_execute(f'ALTER DATABASE "{self.database}" ALLOW_CONNECTIONS false')
        admin_execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            f"WHERE datname = '{self.database}' AND pid <> pg_backend_pid()"
        )

    def end(self) -> None:
        admin_execute(f'ALTER DATABASE "{self.database}" ALLOW_CONNECTIONS true')

    def __enter__(self) -> DatabaseOutage:
        self.begin()
        return self

    def __exit__(self, *exc: object) -> None:
        self.end()
