"""Lifecycle controls across real processes: progress, logs, retries, cancel, limits."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime
from typing import Any

import httpx

from tests import services
from tests.conftest import wait_until


def submit(client: httpx.Client, job_type: str, **body: Any) -> str:
    response = client.post("/api/tasks", json={"type": job_type, **body})
    assert response.status_code == 201, response.text
    return str(response.json()["taskId"])


def task(client: httpx.Client, task_id: str) -> dict[str, Any]:
    return dict(client.get(f"/api/admin/tasks/{task_id}").json())


def finished(client: httpx.Client, task_id: str, timeout: float = 60) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        t = task(client, task_id)
        return t if t["status"] in ("completed", "failed", "cancelled") else None

    return dict(wait_until(done, timeout=timeout, what=f"task {task_id} to finish"))


def logs(client: httpx.Client, task_id: str, **query: Any) -> list[dict[str, Any]]:
    return list(client.get(f"/api/admin/tasks/{task_id}/logs", params=query).json()["lines"])


def at(line: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(line["createdAt"])


def running_platform(
    factory: Callable[..., Any], pg_url: str, redis_url: str, **settings: str
) -> Any:
    platform = factory(pg_url, redis_url, **settings)
    platform.start_api()
    platform.start_relay()
    return platform


def test_progress_is_visible_while_the_job_runs_and_ends_at_100(
    pg_url: str, redis_url: str, platform_factory: Callable[..., Any]
) -> None:
    platform = running_platform(platform_factory, pg_url, redis_url)
    platform.start_worker()
    client = platform.client()
    task_id = submit(client, "demo.sleep", params={"seconds": 4, "steps": 20})

    midway = wait_until(
        lambda: (
            (t := task(client, task_id))["status"] == "running" and 0 < t["percent"] < 100 and t
        ),
        what="progress between 0 and 100%",
    )
    assert midway["total"] == 20
    done = finished(client, task_id)
    assert (done["status"], done["progress"], done["total"], done["percent"]) == (
        "completed",
        20,
        20,
        100,
    )
    # The job's own logging calls went to its log.
    assert any("step 20 of 20 done" in line["message"] for line in logs(client, task_id))


def test_a_failing_job_is_retried_with_backoff_even_when_the_broker_is_flushed_meanwhile(
    pg_url: str, redis_url: str, platform_factory: Callable[..., Any]
) -> None:
    platform = running_platform(platform_factory, pg_url, redis_url)
    platform.start_worker()
    client = platform.client()
    task_id = submit(client, "demo.fail", params={"times": 2})

    # Flush the broker while the first retry waits out its backoff.
    wait_until(lambda: task(client, task_id)["retryCount"] == 1, what="the first failure")
    services.redis_client().flushdb()

    done = finished(client, task_id)
    assert (done["status"], done["attempts"], done["retryCount"]) == ("completed", 3, 2)
    assert done["result"] == {"attempt": 3}
    errors = logs(client, task_id, level="ERROR")
    starts = [line for line in logs(client, task_id, level="INFO") if "started" in line["message"]]
    assert len(errors) == 2 and "DemoFailure" in errors[0]["message"]  # full tracebacks
    assert (at(starts[1]) - at(errors[0])).total_seconds() >= 1.0
    assert (at(starts[2]) - at(errors[1])).total_seconds() >= 2.0


def test_a_job_that_keeps_failing_ends_failed_with_its_error(
    pg_url: str, redis_url: str, platform_factory: Callable[..., Any]
) -> None:
    platform = running_platform(platform_factory, pg_url, redis_url)
    platform.start_worker()
    client = platform.client()
    # 3 retries: 1 + 2 + 4 s of backoff, then the fourth attempt fails too
    task_id = submit(client, "demo.fail", params={"times": 5}, maxRetries=3)

    done = finished(client, task_id)
    assert (done["status"], done["attempts"], done["retryCount"]) == ("failed", 4, 3)
    assert done["error"].startswith("DemoFailure: failing on purpose (attempt 4")


def test_a_cancelled_pending_task_never_starts(
    pg_url: str, redis_url: str, platform_factory: Callable[..., Any]
) -> None:
    platform = running_platform(platform_factory, pg_url, redis_url)
    client = platform.client()
    task_id = submit(client, "demo.echo", params={"x": 1})
    wait_until(lambda: task(client, task_id)["runAfter"], what="the task")  # committed

    answer = client.post(f"/api/admin/tasks/{task_id}/cancel")
    assert answer.status_code == 200
    assert answer.json()["status"] == "cancelled" and answer.json()["cancelledAt"]

    # When a worker starts and a later task runs through, the cancelled one never started
    platform.start_worker()
    other = submit(client, "demo.echo")
    finished(client, other)
    cancelled = task(client, task_id)
    assert (cancelled["status"], cancelled["attempts"], cancelled["startedAt"]) == (
        "cancelled",
        0,
        None,
    )
    again = client.post(f"/api/admin/tasks/{task_id}/cancel")
    assert (again.status_code, again.json()["status"]) == (409, "cancelled")


def test_a_running_job_that_never_checks_is_cancelled_within_two_seconds(
    pg_url: str, redis_url: str, platform_factory: Callable[..., Any]
) -> None:
    platform = running_platform(platform_factory, pg_url, redis_url)
    platform.start_worker(threads=2)
    client = platform.client()
    task_id = submit(client, "demo.sleep", params={"seconds": 60, "steps": 1})
    wait_until(lambda: task(client, task_id)["status"] == "running", what="the job to start")

    asked = client.post(f"/api/admin/tasks/{task_id}/cancel").json()
    assert asked["status"] == "running" and asked["cancelRequested"] is True
    done = finished(client, task_id, timeout=2.0)

    assert done["status"] == "cancelled" and done["cancelledAt"]
    # And the worker goes on serving other jobs
    assert finished(client, submit(client, "demo.echo"), timeout=10)["status"] == "completed"
    assert client.post(f"/api/admin/tasks/{task_id}/cancel").status_code == 409


def test_a_job_over_its_time_limit_fails_with_the_timeout(
    pg_url: str, redis_url: str, platform_factory: Callable[..., Any]
) -> None:
    platform = running_platform(platform_factory, pg_url, redis_url)
    platform.start_worker()
    client = platform.client()
    task_id = submit(
        client, "demo.sleep", params={"seconds": 10, "steps": 1}, timeoutSeconds=1, maxRetries=0
    )
    done = finished(client, task_id, timeout=15)
    assert (done["status"], done["error"]) == ("failed", "timed out after 1 s")


def test_an_admin_retry_runs_a_failed_task_again(
    pg_url: str, redis_url: str, platform_factory: Callable[..., Any]
) -> None:
    platform = running_platform(platform_factory, pg_url, redis_url)
    platform.start_worker()
    client = platform.client()
    task_id = submit(client, "demo.fail", params={"times": 1}, maxRetries=0)
    assert finished(client, task_id)["status"] == "failed"

    answer = client.post(f"/api/admin/tasks/{task_id}/retry")
    assert answer.status_code == 200 and answer.json()["status"] == "pending"
    done = finished(client, task_id)
    assert (done["status"], done["attempts"]) == ("completed", 2)
    assert client.post(f"/api/admin/tasks/{task_id}/retry").status_code == 409


def test_a_concurrency_limit_holds_across_worker_processes(
    pg_url: str, redis_url: str, platform_factory: Callable[..., Any]
) -> None:
    # Given demo.sleep limited to 2 at once, and two worker processes of 4 threads
    platform = running_platform(
        platform_factory, pg_url, redis_url, concurrency='{"demo.sleep": 2}'
    )
    platform.start_worker(processes=2, threads=4)
    client = platform.client()
    ids = client.post(
        "/api/tasks/batch",
        json={"tasks": [{"type": "demo.sleep", "params": {"seconds": 0.6}}] * 10},
    ).json()["taskIds"]

    # When we sample how many run at once while they drain
    peak = 0
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak
        with httpx.Client(base_url=platform.api_url) as sampler:
            while not stop.is_set():
                page = sampler.get(
                    "/api/admin/tasks", params={"status": "running", "type": "demo.sleep"}
                )
                peak = max(peak, page.json()["total"])

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        wait_until(lambda: task(client, ids[0])["status"] != "pending", what="the first start")
        other = submit(client, "demo.echo")  # another type is not held up by the limit
        assert finished(client, other, timeout=5)["status"] == "completed"
        for task_id in ids:
            assert finished(client, task_id)["status"] == "completed"
    finally:
        stop.set()
        sampler.join()

    # Then never more than 2 ran at once, and waiting used no attempt
    assert peak == 2
    assert all(task(client, task_id)["attempts"] == 1 for task_id in ids)


def test_sigterm_lets_short_jobs_finish_and_puts_long_ones_back_uncounted(
    pg_url: str, redis_url: str, platform_factory: Callable[..., Any]
) -> None:
    platform = running_platform(platform_factory, pg_url, redis_url, shutdown_grace="2")
    worker = platform.start_worker(threads=2)
    client = platform.client()
    short = submit(client, "demo.sleep", params={"seconds": 1})
    long = submit(client, "demo.sleep", params={"seconds": 30})
    wait_until(
        lambda: all(task(client, t)["status"] == "running" for t in (short, long)),
        what="both to start",
    )

    assert worker.terminate(timeout=30) == 0

    assert task(client, short)["status"] == "completed"
    back = task(client, long)
    assert (back["status"], back["attempts"], back["retryCount"]) == ("pending", 0, 0)
