"""Redis losing every message (FLUSHDB, or a restart without persistence) loses no job:
the sweeper sees the broker's epoch change and publishes the pending tasks again.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from sqlalchemy import Engine, func, select

from app.models import Outbox
from tests import services
from tests.conftest import wait_until

TASKS = 200
#: Dramatiq's Redis layout: every message of queue "default" until it is acked.
DEFAULT_MESSAGES = "dramatiq:default.msgs"


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    client = services.redis_client()
    yield client
    client.close()


def all_published(engine: Engine) -> bool:
    """The relay deletes an outbox row when it has published (and committed) it."""
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(Outbox)).scalar_one() == 0


def test_tasks_published_before_redis_lost_its_data_all_complete_once(
    pg_url: str,
    redis_url: str,
    pg_engine: Engine,
    redis_client: redis.Redis,
    platform_factory: Callable[..., Any],
) -> None:
    # Given 200 tasks published to Redis by a running relay, with no worker to take them
    platform = platform_factory(pg_url, redis_url)
    platform.start_api()
    relay = platform.start_relay()
    client = platform.client()
    batch = {"tasks": [{"type": "demo.noop"} for _ in range(TASKS)]}
    created = client.post("/api/tasks/batch", json=batch)
    assert created.status_code == 201
    wait_until(lambda: all_published(pg_engine), timeout=30, what="every task to be published")
    assert redis_client.hlen(DEFAULT_MESSAGES) == TASKS

    # When Redis loses its data and a worker starts
    redis_client.flushdb()
    platform.start_worker()

    # Then every task completes, each started once
    def tasks() -> list[dict[str, Any]]:
        page = client.get("/api/admin/tasks", params={"pageSize": 500}).json()
        return list(page["tasks"])

    wait_until(
        lambda: all(t["status"] == "completed" for t in tasks()),
        timeout=30,
        what="every task to complete",
    )
    done = tasks()
    assert sorted(t["taskId"] for t in done) == sorted(created.json()["taskIds"])
    assert {t["attempts"] for t in done} == {1}
    # and the relay said what happened
    assert re.search(rf"WARNING .*the broker lost .*\b{TASKS} task\(s\)", relay.log())
