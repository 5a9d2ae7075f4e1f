"""Priority across real processes: an urgent task overtakes a backlog of lower priority.

Redis lists are first in, first out; the relay keeps each queue's backlog on the broker
within its window (``JOBPLANE_RELAY_WINDOW``) and publishes the highest priority first,
so an urgent task waits behind at most the window plus what the workers prefetched.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
from sqlalchemy import create_engine, text

from tests.conftest import wait_until

WINDOW = 20
THREADS = 4
#: What the one worker process prefetches: Dramatiq's default, twice its threads.
PREFETCH = 2 * THREADS


def submit(client: httpx.Client, count: int, priority: int) -> None:
    for start in range(0, count, 1000):
        tasks = [{"type": "demo.noop", "priority": priority}] * min(1000, count - start)
        response = client.post("/api/tasks/batch", json={"tasks": tasks})
        assert response.status_code == 201, response.text


def test_an_urgent_task_waits_behind_at_most_the_window_and_the_prefetch_of_a_backlog(
    pg_url: str, redis_url: str, platform_factory: Callable[..., Any]
) -> None:
    # Given a platform whose relay keeps at most 20 messages of a queue on the broker,
    # and a worker (one process, 4 threads) running
    platform = platform_factory(pg_url, redis_url, relay_window=str(WINDOW))
    platform.start_api()
    platform.start_relay()
    platform.start_worker(processes=1, threads=THREADS)
    client = platform.client()

    engine = create_engine(pg_url)
    try:
        with engine.connect() as conn:

            def count(sql: str) -> int:
                return int(
                    conn.execute(text(f"SELECT count(*) FROM jobplane_tasks {sql}")).one()[0]
                )

            # When 1,500 tasks of priority 0 are queued on one queue and the first 100
            # of them have started, then 10 tasks of priority 9 are queued
            submit(client, 1500, 0)
            wait_until(lambda: count("WHERE started_at IS NOT NULL") >= 100, what="100 started")
            submit(client, 10, 9)

            # Then all of them run
            wait_until(
                lambda: count("WHERE status = 'completed'") == 1510,
                timeout=60,
                what="1,510 tasks to complete",
            )
            # and while each urgent one waited (from its submission to its start), at
            # most window + prefetch tasks of priority 0 started (a claim in the same
            # group commit as the urgent one, with the same started_at, counts)
            behind = conn.execute(
                text(
                    "SELECT count(low.id) FROM jobplane_tasks AS urgent"
                    " LEFT JOIN jobplane_tasks AS low ON low.priority = 0"
                    " AND low.started_at >= urgent.created_at"
                    " AND low.started_at <= urgent.started_at"
                    " WHERE urgent.priority = 9 GROUP BY urgent.id"
                )
            ).scalars()
            waited_behind = sorted(behind)
            after_the_last = count(
                "WHERE priority = 0 AND started_at >"
                " (SELECT max(started_at) FROM jobplane_tasks WHERE priority = 9)"
            )
    finally:
        engine.dispose()
    assert len(waited_behind) == 10
    assert max(waited_behind) <= WINDOW + PREFETCH, waited_behind
    # and the backlog was overtaken: most of it started after the last urgent task
    assert after_the_last >= 1000, after_the_last
