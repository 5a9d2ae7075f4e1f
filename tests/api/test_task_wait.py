"""``GET /api/tasks/{id}?wait=S`` over real HTTP: a long poll that holds no thread.

One uvicorn server (and its database) serves the whole module; tasks are finished by
the store's own statements from the test, as a worker's lifecycle finishes them.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import Engine, insert, text

from jobplane import service, store
from jobplane.api import task_waits
from jobplane.api.main import create_app
from jobplane.db import make_engine
from jobplane.migrate import upgrade
from jobplane.models import Task, utcnow
from jobplane.service import Submission
from jobplane.settings import Settings
from jobplane.store.rows import TaskRow
from tests import services
from tests.conftest import LiveServer, wait_until

LONG = 30.0  #: a wait the tests that finish their task never reach
PROMPTLY = 5.0  #: far below LONG, far above any commit's latency
CONCURRENT = 200  #: waiting requests at once: five times the API's thread pool
_names = itertools.count()


class Api:
    """A live API with its app (to look at its listener) and its database's engine."""

    def __init__(self, app: FastAPI, server: LiveServer, engine: Engine) -> None:
        self.app, self.server, self.engine = app, server, engine
        self.client = httpx.Client(base_url=server.url, timeout=LONG * 2)

    def watched(self) -> set[str]:
        listener = self._listener()
        return set() if listener is None else listener.watched()

    def paused(self) -> int:
        listener = self._listener()
        return 0 if listener is None else listener.paused()

    def _listener(self) -> task_waits.TaskDoneListener | None:
        return getattr(self.app.state, "task_done_listener", None)


@contextmanager
def start_api(url: str) -> Iterator[Api]:
    engine = make_engine(url)
    app = create_app(Settings(database_url=url), engine=engine)
    try:
        with LiveServer(app) as server:
            api = Api(app, server, engine)
            try:
                yield api
            finally:
                api.client.close()
    finally:
        engine.dispose()


@pytest.fixture(scope="module")
def pg(pg_template: str) -> Iterator[Api]:
    name = f"jobplane_test_wait_{next(_names)}_{id(pg_template)}"
    services.admin_execute(f'CREATE DATABASE "{name}" TEMPLATE "{pg_template}"')
    with start_api(services.pg_url(name)) as api:
        yield api
    services.admin_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def no_safety_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    """Waiters re-read only when woken: a wait that ends in time was woken by a NOTIFY."""
    monkeypatch.setattr(task_waits, "SAFETY_INTERVAL", 10 * LONG)


@pytest.fixture
def executor() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(max_workers=2) as pool:
        yield pool


def tasks_in(engine: Engine, count: int, status: str) -> list[TaskRow]:
    now = utcnow()
    rows = [
        replace(
            service.build_task(Submission(type="demo.noop"), Settings(), now),
            status=status,
            attempts=int(status == "running"),
        )
        for _ in range(count)
    ]
    with engine.begin() as conn:
        conn.execute(insert(Task), [row.columns() for row in rows])
    return rows


def complete(engine: Engine, tasks: list[TaskRow], result: Any = "done") -> None:
    with engine.begin() as conn:
        done = store.claims.complete_tasks(
            conn, [(task.id, task.dispatch, result) for task in tasks], utcnow()
        )
    assert all(done)


LISTENERS = (
    "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
    "AND query = 'LISTEN jobplane_task_done'"
)


def listener_pids(engine: Engine) -> list[int]:
    with engine.connect() as conn:
        return list(conn.execute(text(LISTENERS)).scalars())


def test_a_wait_answers_with_the_finished_task_as_soon_as_it_completes(
    pg: Api, executor: ThreadPoolExecutor, no_safety_reads: None
) -> None:
    # Given a request waiting for a running task
    (task,) = tasks_in(pg.engine, 1, "running")
    answer: Future[httpx.Response] = executor.submit(
        pg.client.get, f"/api/tasks/{task.id}", params={"wait": LONG}
    )
    wait_until(lambda: task.id in pg.watched() and listener_pids(pg.engine))

    # When the task completes
    finished_at = time.monotonic()
    complete(pg.engine, [task], {"rows": 3})

    # Then the answer is the completed task, woken by the commit's NOTIFY
    response = answer.result(timeout=LONG)
    assert time.monotonic() - finished_at < PROMPTLY
    assert response.status_code == 200
    body = response.json()
    assert (body["taskId"], body["status"], body["result"]) == (task.id, "completed", {"rows": 3})


def test_a_wait_answers_after_its_seconds_with_the_current_state(pg: Api) -> None:
    (task,) = tasks_in(pg.engine, 1, "running")
    started = time.monotonic()
    response = pg.client.get(f"/api/tasks/{task.id}", params={"wait": 0.5})
    assert time.monotonic() - started >= 0.5
    assert response.status_code == 200
    assert (response.json()["taskId"], response.json()["status"]) == (task.id, "running")


def test_a_finished_task_or_an_unknown_one_is_answered_at_once(pg: Api) -> None:
    (task,) = tasks_in(pg.engine, 1, "failed")
    started = time.monotonic()
    finished = pg.client.get(f"/api/tasks/{task.id}", params={"wait": LONG})
    assert finished.json()["status"] == "failed"
    unknown = pg.client.get("/api/tasks/no-such-task", params={"wait": LONG})
    assert time.monotonic() - started < PROMPTLY
    assert (unknown.status_code, unknown.json()["error"]) == (404, "task_not_found")


@pytest.mark.parametrize("wait", ["61", "-1", "soon", "nan"])
def test_a_wait_out_of_bounds_is_refused_with_a_422(pg: Api, wait: str) -> None:
    (task,) = tasks_in(pg.engine, 1, "running")
    response = pg.client.get(f"/api/tasks/{task.id}", params={"wait": wait})
    assert response.status_code == 422
    assert response.json()["error"] == "invalid_request"
    assert "wait" in response.json()["message"]


def test_200_waiting_requests_hold_no_thread(pg: Api) -> None:
    # Given 200 running tasks and a request waiting for each (the thread pool has 40)
    tasks = tasks_in(pg.engine, CONCURRENT, "running")
    (other,) = tasks_in(pg.engine, 1, "pending")

    async def scenario() -> tuple[list[httpx.Response], httpx.Response, bool]:
        limits = httpx.Limits(max_connections=CONCURRENT + 10)
        async with httpx.AsyncClient(base_url=pg.server.url, timeout=LONG * 2, limits=limits) as c:
            waits = [
                asyncio.create_task(c.get(f"/api/tasks/{t.id}", params={"wait": LONG}))
                for t in tasks
            ]
            # every request read its task and waits (a request holding a thread while
            # it waits would keep the others from their first read: this never ends)
            deadline = time.monotonic() + LONG
            while pg.paused() < CONCURRENT:
                assert time.monotonic() < deadline, f"only {pg.paused()} requests wait"
                await asyncio.sleep(0.05)
            # When another client reads a task meanwhile
            plain = await asyncio.wait_for(c.get(f"/api/tasks/{other.id}"), PROMPTLY)
            still_waiting = not any(w.done() for w in waits)
            # and then the tasks complete
            await asyncio.to_thread(complete, pg.engine, tasks)
            return await asyncio.wait_for(asyncio.gather(*waits), LONG), plain, still_waiting

    started = time.monotonic()
    answers, plain, still_waiting = asyncio.run(scenario())

    # Then it was answered while all 200 were waiting, and each of them got its task
    # completed, long before their wait was up
    assert plain.status_code == 200 and plain.json()["status"] == "pending"
    assert still_waiting
    assert [a.json()["taskId"] for a in answers] == [t.id for t in tasks]
    assert {a.json()["status"] for a in answers} == {"completed"}
    assert time.monotonic() - started < LONG


def test_the_shared_listener_reconnects_after_its_connection_is_killed(
    pg: Api, executor: ThreadPoolExecutor, no_safety_reads: None
) -> None:
    # Given a request waiting on the API's listener
    (task,) = tasks_in(pg.engine, 1, "running")
    answer = executor.submit(pg.client.get, f"/api/tasks/{task.id}", params={"wait": LONG})
    wait_until(lambda: task.id in pg.watched() and listener_pids(pg.engine))
    (killed,) = listener_pids(pg.engine)

    # When its connection is killed, the listener is back, and the task completes
    with pg.engine.connect() as conn:
        conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": killed})
    wait_until(
        lambda: listener_pids(pg.engine) not in ([], [killed]), what="the listener to reconnect"
    )
    complete(pg.engine, [task], "after the reconnect")

    # Then the waiting request answers with the completed task
    assert answer.result(timeout=LONG).json()["result"] == "after the reconnect"
    assert len(listener_pids(pg.engine)) == 1


def test_on_sqlite_a_wait_polls_until_the_task_completes(
    tmp_path: Path, executor: ThreadPoolExecutor, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given an API on SQLite and a request that waits for a running task, and polled
    pauses: list[float] = []
    pause = task_waits.PollingWatch.pause

    async def counted(watch: task_waits.PollingWatch, timeout: float) -> None:
        pauses.append(timeout)
        await pause(watch, timeout)

    monkeypatch.setattr(task_waits.PollingWatch, "pause", counted)
    url = f"sqlite:///{tmp_path / 'wait.db'}"
    upgrade(url)
    with start_api(url) as api:
        (task,) = tasks_in(api.engine, 1, "running")
        answer = executor.submit(api.client.get, f"/api/tasks/{task.id}", params={"wait": LONG})
        wait_until(lambda: len(pauses) >= 2, what="the request to poll")

        # When the task completes, then the request answers with it
        finished_at = time.monotonic()
        complete(api.engine, [task], 7)
        response = answer.result(timeout=LONG)
        assert time.monotonic() - finished_at < PROMPTLY
        assert (response.json()["status"], response.json()["result"]) == ("completed", 7)


def test_a_process_holds_at_most_max_task_waits_long_polls_at_once(
    pg: Api, executor: ThreadPoolExecutor, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given an API that holds one long poll at most, holding one
    monkeypatch.setattr(pg.app.state.task_waits, "limit", 1)
    first, second = tasks_in(pg.engine, 2, "running")
    held: Future[httpx.Response] = executor.submit(
        pg.client.get, f"/api/tasks/{first.id}", params={"wait": LONG}
    )
    wait_until(lambda: first.id in pg.watched(), what="the first long poll to wait")

    # When another client asks to wait
    refused = pg.client.get(f"/api/tasks/{second.id}", params={"wait": LONG})

    # Then it is refused at once, with when to come back, in the JSON shape
    assert refused.status_code == 503
    assert refused.headers["Retry-After"]
    assert refused.json()["error"] == "too_many_waits"
    assert "JOBPLANE_MAX_TASK_WAITS" in refused.json()["message"]
    # While a plain read still answers
    assert pg.client.get(f"/api/tasks/{second.id}").json()["status"] == "running"

    # And once the first wait has its answer, the slot is free again
    complete(pg.engine, [first])
    assert held.result(timeout=LONG).json()["status"] == "completed"
    complete(pg.engine, [second])
    again = pg.client.get(f"/api/tasks/{second.id}", params={"wait": LONG})
    assert (again.status_code, again.json()["status"]) == (200, "completed")


def test_the_openapi_document_describes_wait_and_its_bounds(pg: Api) -> None:
    spec = pg.client.get("/openapi.json").json()
    parameters = spec["paths"]["/api/tasks/{task_id}"]["get"]["parameters"]
    (wait,) = [p for p in parameters if p["name"] == "wait"]
    assert wait["in"] == "query" and not wait.get("required", False)
    (number,) = [s for s in wait["schema"]["anyOf"] if s.get("type") == "number"]
    assert (number["minimum"], number["maximum"]) == (0, 60)
    assert "finish" in wait["description"]


def test_waits_on_a_second_event_loop_get_a_listener_of_their_own(
    pg: Api, no_safety_reads: None
) -> None:
    # Given the app called in-process (as ASGI test clients do), each call on its own loop
    app = create_app(Settings(database_url=pg.engine.url.render_as_string(False)), engine=pg.engine)
    (first, second) = tasks_in(pg.engine, 2, "running")

    async def wait_for(task: TaskRow, seconds: float, finish: bool) -> dict[str, Any]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
            answer = asyncio.create_task(
                client.get(f"/api/tasks/{task.id}", params={"wait": seconds})
            )
            if finish:
                listener = app.state.task_done_listener
                deadline = time.monotonic() + PROMPTLY
                while task.id not in listener.watched() or listener.conn is None:
                    assert time.monotonic() < deadline, "no listener on this loop"
                    await asyncio.sleep(0.02)
                await asyncio.to_thread(complete, pg.engine, [task])
            body: dict[str, Any] = (await asyncio.wait_for(answer, LONG)).json()
            return body

    # When a first loop's request waits out its time, and a second loop's waits for a
    # task that then completes
    assert asyncio.run(wait_for(first, 0.2, finish=False))["status"] == "running"
    body = asyncio.run(wait_for(second, LONG, finish=True))

    # Then the second was woken by a notification to its own loop's listener
    assert body["status"] == "completed"
    asyncio.run(task_waits.close_listener(app))


def test_waits_ended_by_one_commit_are_answered_from_one_read_of_their_tasks(
    pg: Api, monkeypatch: pytest.MonkeyPatch, no_safety_reads: None
) -> None:
    # Given 50 requests waiting for 50 running tasks, the listener's reads counted
    listener = task_waits.listener_of(pg.app)
    reads: list[list[str]] = []
    read_many = listener._read_many

    async def counted(task_ids: list[str]) -> dict[str, TaskRow]:
        reads.append(task_ids)
        return await read_many(task_ids)

    monkeypatch.setattr(listener, "_read_many", counted)
    tasks = tasks_in(pg.engine, 50, "running")
    with ThreadPoolExecutor(max_workers=len(tasks)) as pool:
        answers = [
            pool.submit(pg.client.get, f"/api/tasks/{t.id}", params={"wait": LONG}) for t in tasks
        ]
        wait_until(lambda: pg.paused() >= len(tasks), what="every request to wait")

        # When one statement completes them all
        complete(pg.engine, tasks, "together")

        # Then each request answers with its completed task, and the listener read
        # the 50 rows in one statement for all of them
        results = [answer.result(timeout=LONG).json() for answer in answers]
    assert [r["taskId"] for r in results] == [t.id for t in tasks]
    assert {(r["status"], r["result"]) for r in results} == {("completed", "together")}
    assert [sorted(ids) for ids in reads] == [sorted(t.id for t in tasks)]


def test_when_the_listener_cannot_read_the_finished_tasks_each_waiter_reads_its_own(
    pg: Api, executor: ThreadPoolExecutor, monkeypatch: pytest.MonkeyPatch, no_safety_reads: None
) -> None:
    # Given a waiting request, and a listener whose shared read fails
    listener = task_waits.listener_of(pg.app)

    async def failing(task_ids: list[str]) -> dict[str, TaskRow]:
        raise OSError("the pool is exhausted")

    monkeypatch.setattr(listener, "_read_many", failing)
    (task,) = tasks_in(pg.engine, 1, "running")
    answer = executor.submit(pg.client.get, f"/api/tasks/{task.id}", params={"wait": LONG})
    wait_until(lambda: task.id in pg.watched() and pg.paused() >= 1, what="the request to wait")

    # When the task completes, then the request still answers with it, at once
    complete(pg.engine, [task], "read by the waiter")
    assert answer.result(timeout=PROMPTLY).json()["result"] == "read by the waiter"
