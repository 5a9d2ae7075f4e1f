"""A relay killed after publishing a batch, before committing it, loses nothing and
starts nothing twice: its rows are published again, and the duplicates are dropped.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import redis
from sqlalchemy import Engine

from jobplane.outbox.relay import CRASH_AFTER_PUBLISH_ENV
from tests.conftest import DEFAULT_MESSAGES, DEFAULT_QUEUE, outbox_rows, wait_until

TASKS = 50
#: The worker's line for a message it drops: "… task <id> (dispatch <n>): <reason>".
DROPPED = re.compile(r"task ([0-9a-f-]{36}) \(dispatch 1\): (.+)$", re.MULTILINE)


def test_a_relay_killed_between_publishing_and_committing_starts_no_task_twice(
    pg_url: str,
    redis_url: str,
    pg_engine: Engine,
    redis_client: redis.Redis,
    platform_factory: Callable[..., Any],
) -> None:
    # Given 50 submitted tasks and no relay yet
    platform = platform_factory(pg_url, redis_url)
    platform.start_api()
    client = platform.client()
    batch = {"tasks": [{"type": "demo.echo", "params": {"n": n}} for n in range(TASKS)]}
    created = client.post("/api/tasks/batch", json=batch)
    assert created.status_code == 201
    task_ids = created.json()["taskIds"]

    # When a relay publishes them and is killed (SIGKILL) before its commit
    crashing = platform.start_relay(env={CRASH_AFTER_PUBLISH_ENV: "1"})
    wait_until(lambda: crashing.popen.poll() is not None, timeout=30, what="the relay to die")

    # Then every message reached the broker, but the outbox still holds every row
    assert crashing.popen.returncode == -9
    assert redis_client.hlen(DEFAULT_MESSAGES) == TASKS
    assert outbox_rows(pg_engine) == TASKS

    # When a healthy relay starts
    platform.start_relay()

    # Then it publishes every row again, under the same message id (one per task and
    # dispatch): each task's message is queued twice, its data held once
    wait_until(lambda: outbox_rows(pg_engine) == 0, timeout=30, what="the outbox to drain")
    assert redis_client.hlen(DEFAULT_MESSAGES) == TASKS
    assert redis_client.llen(DEFAULT_QUEUE) == 2 * TASKS

    # When a worker starts
    worker = platform.start_worker()

    # Then every task completes after exactly one start
    def tasks() -> list[dict[str, Any]]:
        page = client.get("/api/admin/tasks", params={"pageSize": 500}).json()
        return list(page["tasks"])

    wait_until(
        lambda: all(t["status"] == "completed" for t in tasks()),
        timeout=30,
        what="every task to complete",
    )
    done = tasks()
    assert sorted(t["taskId"] for t in done) == sorted(task_ids)
    assert {t["attempts"] for t in done} == {1}

    # and each task's second delivery found the task taken (and was dropped) or its
    # data already acked away (and was skipped): nothing is left on the broker
    wait_until(
        lambda: redis_client.hlen(DEFAULT_MESSAGES) == redis_client.llen(DEFAULT_QUEUE) == 0,
        timeout=30,
        what="the duplicates to be consumed",
    )
    dropped = DROPPED.findall(worker.log())
    assert {task_id for task_id, _ in dropped} <= set(task_ids)
    assert {reason for _, reason in dropped} <= {
        "task is running",
        "task is completed",
        "task was claimed concurrently",
    }
    assert {t["attempts"] for t in tasks()} == {1}
