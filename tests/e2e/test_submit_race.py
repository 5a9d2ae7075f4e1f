"""The Celery-era race: a worker must never get a task before its row is committed.

There, the job was dispatched right after the API's commit and the worker sometimes
could not find the row ("Task … not found in database after 5 retries"). Here only
the relay publishes, and only rows it can read (invariant 1), so under any load the
worker finds every row.
"""

from __future__ import annotations

import queue
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx

from tests.conftest import wait_until

SUBMISSIONS = 500
CLIENTS = 32


def completed(client: httpx.Client) -> int:
    page = client.get("/api/admin/tasks", params={"status": "completed", "pageSize": 1})
    return int(page.json()["total"])


def test_tasks_submitted_concurrently_over_http_all_complete_and_every_row_is_found(
    pg_url: str, redis_url: str, platform_factory: Callable[..., Any]
) -> None:
    # Given the API, a relay and a worker as separate processes
    platform = platform_factory(pg_url, redis_url)
    platform.start_api()
    platform.start_relay()
    worker = platform.start_worker(processes=1, threads=8)
    clients: queue.Queue[httpx.Client] = queue.Queue()
    for _ in range(CLIENTS):
        clients.put(platform.client())

    def submit(number: int) -> httpx.Response:
        client = clients.get()
        try:
            return client.post("/api/tasks", json={"type": "demo.echo", "params": {"n": number}})
        finally:
            clients.put(client)

    # When 500 tasks are submitted by 32 concurrent clients while the worker runs
    with ThreadPoolExecutor(CLIENTS) as pool:
        responses = list(pool.map(submit, range(SUBMISSIONS)))

    # Then every submission was accepted as a new task
    assert [r.status_code for r in responses] == [201] * SUBMISSIONS
    assert len({r.json()["taskId"] for r in responses}) == SUBMISSIONS

    # and every task completes
    admin = platform.client()
    wait_until(lambda: completed(admin) == SUBMISSIONS, timeout=45, what="every task to complete")
    sample = admin.get(f"/api/tasks/{responses[-1].json()['taskId']}").json()
    assert sample["result"] == {"n": SUBMISSIONS - 1}
    assert sample["attempts"] == 1

    # and the worker never received a message for a row it could not find
    log = worker.log()
    assert "Worker process is ready for action" in log  # the log captures the worker's lines
    assert "no such task" not in log
