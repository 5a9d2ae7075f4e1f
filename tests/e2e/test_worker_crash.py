"""A worker killed with SIGKILL mid-job loses nothing: the maintenance leader (here the
relay's candidate) recovers the task."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tests.conftest import wait_until


def test_a_task_whose_worker_is_killed_mid_job_completes_on_a_second_attempt(
    pg_url: str, redis_url: str, platform_factory: Callable[..., Any]
) -> None:
    # Given a platform running a long demo.sleep
    platform = platform_factory(pg_url, redis_url)
    platform.start_api()
    platform.start_relay()
    worker = platform.start_worker()
    client = platform.client()
    task_id = client.post(
        "/api/tasks", json={"type": "demo.sleep", "params": {"seconds": 4, "steps": 8}}
    ).json()["taskId"]

    def task() -> dict[str, Any]:
        return client.get(f"/api/tasks/{task_id}").json()

    wait_until(lambda: task()["progress"] >= 2, timeout=30, what="the job to make progress")

    # When its worker dies with SIGKILL and a new one starts
    worker.kill()
    platform.start_worker()

    # Then the task is recovered and completes, its lost attempt counted
    done = wait_until(
        lambda: (t := task())["status"] in ("completed", "failed") and t,
        timeout=60,
        what="completion",
    )
    assert done["status"] == "completed"
    assert done["attempts"] == 2
    assert done["retryCount"] == 1
