"""Redis losing every message (FLUSHDB, or a restart without persistence) loses no job:
the maintenance leader (here the relay's candidate) sees the broker's epoch change and
publishes the pending tasks again.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import redis
from sqlalchemy import Engine

from tests.conftest import DEFAULT_MESSAGES, outbox_rows, wait_until

TASKS = 200


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
    # (the relay deletes an outbox row once it has published it and committed)
    wait_until(lambda: outbox_rows(pg_engine) == 0, timeout=30, what="every task to be published")
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
    # and the relay's process (the maintenance leader) said what happened
    assert re.search(rf"WARNING .*the broker lost .*\b{TASKS} task\(s\)", relay.log())
