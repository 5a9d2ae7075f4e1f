"""The dashboard's live stream: Server-Sent Events of task changes and stats."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from contextlib import ExitStack
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import Connection, Engine

from jobplane import store
from jobplane.api.events import MAX_STREAM_SECONDS, TaskWatcher
from jobplane.models import utcnow
from jobplane.settings import Settings
from tests.conftest import wait_until

TOKEN = "events-test-token-0123"
Event = tuple[str, dict[str, Any]]


@pytest.fixture
def api(api_factory: Callable[..., httpx.Client], pg_settings: Settings) -> httpx.Client:
    return api_factory(pg_settings.model_copy(update={"api_token": TOKEN}), token=TOKEN)


def read_events(
    client: httpx.Client,
    *,
    seconds: float,
    on_event: Callable[[list[Event]], bool] = lambda _: False,
) -> list[Event]:
    """Events of one stream, until it ends (``seconds``) or ``on_event`` returns True."""
    events: list[Event] = []
    with client.stream(
        "GET", "/api/admin/events", params={"maxSeconds": seconds}, timeout=seconds + 10
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        name = "message"
        for line in response.iter_lines():
            if line.startswith("event:"):
                name = line.removeprefix("event:").strip()
            elif line.startswith("data:"):
                events.append((name, json.loads(line.removeprefix("data:"))))
                if on_event(events):
                    break
    return events


def task_updates(events: list[Event], task_id: str) -> list[dict[str, Any]]:
    return [
        task
        for name, data in events
        if name == "tasks"
        for task in data["tasks"]
        if task["taskId"] == task_id
    ]


def claim(conn: Connection, task_id: str, now: datetime) -> None:
    store.workers.report(conn, "w:1", now)
    store.claims.claim_task(conn, task_id, 1, worker="w:1", now=now)


def finish(conn: Connection, task_id: str, now: datetime) -> None:
    store.claims.record_progress(conn, task_id, 1, 10, 10)
    store.claims.complete_task(conn, task_id, 1, result={}, now=now)


def test_the_stream_sends_stats_and_each_change_of_a_running_task(
    api: httpx.Client, pg_engine: Engine
) -> None:
    # Given a submitted task
    task_id = api.post("/api/tasks", json={"type": "demo.sleep"}).json()["taskId"]
    steps = iter(
        [
            lambda conn, now: claim(conn, task_id, now),
            lambda conn, _now: store.claims.record_progress(conn, task_id, 1, 3, 10),
            lambda conn, now: finish(conn, task_id, now),
        ]
    )

    def worker_step(events: list[Event]) -> bool:
        # When, after each look's stats, a worker moves the task one step further
        name, data = events[-1]
        if name == "tasks":
            return any(t["status"] == "completed" for t in data["tasks"])
        step = next(steps, None)
        if step is not None:
            with pg_engine.begin() as conn:
                step(conn, utcnow())
        return False

    events = read_events(api, seconds=20, on_event=worker_step)

    # Then every step reached the stream, in order, each sent once
    seen = [(t["status"], t["percent"]) for t in task_updates(events, task_id)]
    assert seen == [("pending", 0), ("running", 0), ("running", 30), ("completed", 100)]
    # And every look brought the stats, which moved with the task
    stats = [data for name, data in events if name == "stats"]
    assert len(stats) == 4
    assert stats[0]["counts"]["pending"] == 1
    assert stats[-1]["counts"]["completed"] == 1
    assert stats[-1]["workers"][0]["worker"] == "w:1"


def test_a_task_going_back_to_pending_is_sent(api: httpx.Client, pg_engine: Engine) -> None:
    # Given a running task the stream has seen
    task_id = api.post("/api/tasks", json={"type": "demo.fail"}).json()["taskId"]
    watcher = TaskWatcher(pg_engine)
    with pg_engine.begin() as conn:
        store.claims.claim_task(conn, task_id, 1, worker="w:1", now=utcnow())
    assert '"status":"running"' in watcher.look()
    # When its attempt fails and it waits for a retry in a minute (no timestamp moves)
    with pg_engine.begin() as conn:
        now = utcnow()
        later = now + timedelta(minutes=1)
        assert store.claims.retry_task(conn, task_id, 1, error="boom", run_after=later, now=now)
    # Then the next look sends it as pending
    events = watcher.look()
    assert '"status":"pending"' in events and task_id in events


def test_a_look_without_changes_sends_only_stats(api: httpx.Client, pg_engine: Engine) -> None:
    api.post("/api/tasks", json={"type": "demo.noop"})
    watcher = TaskWatcher(pg_engine)
    assert "event: tasks" in watcher.look()
    again = watcher.look()
    assert "event: stats" in again and "event: tasks" not in again


def test_the_stream_ends_by_itself_and_needs_the_token(api: httpx.Client) -> None:
    # Given a stream asked to last 1.5 s
    started = time.monotonic()
    events = read_events(api, seconds=1.5)
    # Then it ended on its own, soon after, having sent its looks
    assert time.monotonic() - started < 6
    assert [name for name, _ in events].count("stats") >= 2
    # And without the token it is refused like any admin route
    refused = httpx.get(f"{api.base_url}/api/admin/events", timeout=5)
    assert refused.status_code == 401
    assert refused.json()["error"] == "unauthorized"


def stream_opens(client: httpx.Client) -> bool:
    """Whether a new stream starts (it is closed at once)."""
    with client.stream("GET", "/api/admin/events", params={"maxSeconds": 1}) as response:
        return response.status_code == 200


def test_a_process_serves_at_most_max_event_streams_streams_at_once(
    api_factory: Callable[..., httpx.Client], pg_settings: Settings
) -> None:
    # Given an API that serves two streams at most, and two open streams
    settings = pg_settings.model_copy(update={"api_token": TOKEN, "max_event_streams": 2})
    api = api_factory(settings, token=TOKEN)
    with ExitStack() as streams:
        for _ in range(2):
            stream = api.stream("GET", "/api/admin/events", params={"maxSeconds": 60})
            response = streams.enter_context(stream)
            assert response.status_code == 200
            assert next(response.iter_lines()).startswith("retry:")

        # When a third is asked for
        refused = api.get("/api/admin/events")

        # Then it is refused at once, with when to come back, in the JSON shape
        assert refused.status_code == 503
        assert refused.headers["Retry-After"]
        assert refused.json()["error"] == "too_many_streams"
        assert "JOBPLANE_MAX_EVENT_STREAMS" in refused.json()["message"]
        # While the other routes still answer
        assert api.get("/api/admin/stats").status_code == 200

    # And once those two are closed, their slots come back (the server notices a closed
    # stream at its next look)
    wait_until(lambda: stream_opens(api), what="a stream slot to come back")


def test_a_stream_lasts_at_most_five_minutes(api: httpx.Client) -> None:
    too_long = api.get("/api/admin/events", params={"maxSeconds": MAX_STREAM_SECONDS + 1})
    assert too_long.status_code == 422
    assert "maxSeconds" in too_long.json()["message"]
    with api.stream("GET", "/api/admin/events", params={"maxSeconds": 300}) as response:
        assert response.status_code == 200
