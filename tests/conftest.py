"""Fixtures shared by every layer of tests: databases, Redis, settings, a live API."""

from __future__ import annotations

import itertools
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import dramatiq
import httpx
import pytest
import redis
import uvicorn
from sqlalchemy import Engine, func, select, text

from jobplane.api.main import create_app
from jobplane.db import make_engine
from jobplane.migrate import upgrade
from jobplane.models import Outbox, Task, TaskLog
from jobplane.registry import load_jobs
from jobplane.settings import Settings, get_settings
from tests import services
from tests.private_servers import free_port

# Tests set what they need explicitly; nothing leaks in from the developer's shell.
for _name in [name for name in os.environ if name.startswith("JOBPLANE_")]:
    if not _name.startswith("JOBPLANE_TEST_"):
        del os.environ[_name]
# The tests run the demo jobs, in this process and in the ones they start.
os.environ["JOBPLANE_DEMO_JOBS"] = "1"
get_settings.cache_clear()
load_jobs(demo_jobs=True)  # the built-in jobs, as every jobplane process of the tests has them

_RUN = f"{os.getpid()}"
_counter = itertools.count()


def wait_until(
    condition: Callable[[], Any],
    *,
    timeout: float = 30.0,
    interval: float = 0.05,
    what: str = "condition",
) -> Any:
    """Poll ``condition`` until it returns something truthy; fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


@pytest.fixture(scope="session")
def postgres() -> None:
    services.ensure_postgres()


@pytest.fixture(scope="session")
def redis_server() -> None:
    services.ensure_redis()


@pytest.fixture(scope="session")
def pg_template(postgres: None) -> Iterator[str]:
    """A migrated database that each test's database is cloned from (fast)."""
    name = f"jobplane_tmpl_{_RUN}"
    services.admin_execute(f'DROP DATABASE IF EXISTS "{name}"')
    services.admin_execute(f'CREATE DATABASE "{name}"')
    upgrade(services.pg_url(name))
    yield name
    services.admin_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def pg_url(pg_template: str) -> Iterator[str]:
    """A fresh, migrated PostgreSQL database of this test's own."""
    name = f"jobplane_test_{_RUN}_{next(_counter)}"
    services.admin_execute(f'CREATE DATABASE "{name}" TEMPLATE "{pg_template}"')
    yield services.pg_url(name)
    services.admin_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'jobplane.db'}"
    upgrade(url)
    return url


@pytest.fixture(params=["pg_url", "sqlite_url"], ids=["postgresql", "sqlite"])
def any_url(request: pytest.FixtureRequest) -> str:
    """A fresh, migrated database of this test's own: PostgreSQL, then SQLite."""
    return str(request.getfixturevalue(request.param))


@pytest.fixture
def any_engine(any_url: str) -> Iterator[Engine]:
    engine = make_engine(any_url)
    yield engine
    engine.dispose()


@pytest.fixture
def redis_url(redis_server: None) -> Iterator[str]:
    """A Redis database of the tests' own, empty at the start and end of each test."""
    client = services.redis_client()
    client.flushdb()
    yield services.redis_url()
    client.flushdb()


@pytest.fixture
def pg_engine(pg_url: str) -> Iterator[Engine]:
    engine = make_engine(pg_url)
    yield engine
    engine.dispose()


@pytest.fixture
def sqlite_engine(sqlite_url: str) -> Iterator[Engine]:
    engine = make_engine(sqlite_url)
    yield engine
    engine.dispose()


@pytest.fixture
def pg_settings(pg_url: str, redis_url: str) -> Settings:
    return Settings(database_url=pg_url, broker_url=redis_url)


class LiveServer:
    """uvicorn serving an app on 127.0.0.1 in a thread: real HTTP for the tests."""

    def __init__(self, app: Any) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        wait_until(lambda: self.server.started, timeout=10, what="uvicorn to start")
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@pytest.fixture
def api_factory() -> Iterator[Callable[..., httpx.Client]]:
    """Start the API for given settings over real HTTP; returns an httpx client."""
    stack: list[tuple[LiveServer, httpx.Client]] = []

    def start(
        settings: Settings, *, token: str | None = None, engine: Engine | None = None
    ) -> httpx.Client:
        server = LiveServer(create_app(settings, engine=engine)).__enter__()
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        client = httpx.Client(base_url=server.url, headers=headers, timeout=30)
        stack.append((server, client))
        return client

    yield start
    for server, client in reversed(stack):
        client.close()
        server.__exit__()


@pytest.fixture
def pg_api(api_factory: Callable[..., httpx.Client], pg_settings: Settings) -> httpx.Client:
    return api_factory(pg_settings)


@pytest.fixture
def api_on(
    api_factory: Callable[..., httpx.Client],
) -> Iterator[Callable[[str], tuple[httpx.Client, Engine]]]:
    """Start the API on the database at a URL; returns its client and the API's engine
    (to look at what was written)."""
    engines: list[Engine] = []

    def start(url: str) -> tuple[httpx.Client, Engine]:
        engines.append(make_engine(url))
        return api_factory(Settings(database_url=url), engine=engines[-1]), engines[-1]

    yield start
    for engine in engines:
        engine.dispose()


#: Dramatiq's Redis layout: every message of queue "default" until it is acked.
DEFAULT_MESSAGES = "dramatiq:default.msgs"
#: The ids of the messages queued on "default", in order (a message's data is in the hash).
DEFAULT_QUEUE = "dramatiq:default"


def noop_message(
    queue: str = "default", task_id: str | None = None, **options: Any
) -> dramatiq.Message[object]:
    """A message as the relay publishes it, of ``demo.noop`` (a fresh task id by default)."""
    return dramatiq.Message(
        queue_name=queue,
        actor_name="demo.noop",
        args=(),
        kwargs={"task_id": task_id or str(uuid.uuid4()), "dispatch": 1},
        options=options,
        message_id=str(uuid.uuid4()),
    )


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    """A client of the test Redis database (which ``redis_url`` names and flushes)."""
    client = services.redis_client()
    yield client
    client.close()


def outbox_rows(engine: Engine) -> int:
    return row_counts(engine)["outbox"]


def row_counts(engine: Engine) -> dict[str, int]:
    """How many tasks, outbox rows and log lines there are: 'changes nothing' checks."""
    models = {"tasks": Task, "outbox": Outbox, "task_logs": TaskLog}
    with engine.connect() as conn:
        return {
            name: conn.execute(select(func.count()).select_from(model)).scalar_one()
            for name, model in models.items()
        }


@pytest.fixture
def platform_factory(tmp_path: Path) -> Iterator[Callable[..., Any]]:
    """Real jobplane processes (see tests/e2e/platform.py); all killed at the end."""
    from tests.e2e.platform import Platform

    made: list[Platform] = []

    def make(database_url: str, broker_url: str, **settings: str) -> Platform:
        platform = Platform(database_url, broker_url, tmp_path, **settings)
        made.append(platform)
        return platform

    yield make
    for platform in made:
        platform.close()


def waiting_on_a_lock(engine: Engine) -> bool:
    """Whether some session of ``engine``'s PostgreSQL database waits for a lock."""
    with engine.connect() as conn:
        waiting = conn.execute(
            text(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
        ).scalar_one()
    return bool(waiting)
