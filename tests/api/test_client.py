"""``jobplane.Client`` and ``jobplane.AsyncClient`` against a live API on PostgreSQL.

Each scenario runs with both clients: the async one through ``Blocking``, which awaits
each of its calls to the end, so one test body speaks for both.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine

import jobplane
from jobplane import store
from jobplane.db import make_engine
from jobplane.models import utcnow
from jobplane.service import Submission
from jobplane.settings import Settings
from jobplane.store.rows import NewLogLine
from tests.conftest import wait_until

TOKEN = "client-test-token-0123"
READ_ONLY_TOKEN = "client-read-only-token-0123"


class Blocking:
    """An ``AsyncClient`` whose calls are run to their end, as ``Client``'s are."""

    def __init__(self, client: jobplane.AsyncClient, runner: asyncio.Runner) -> None:
        self._client = client
        self._runner = runner

    def __getattr__(self, name: str) -> Callable[..., Any]:
        method = getattr(self._client, name)
        return lambda *args, **kwargs: self._runner.run(method(*args, **kwargs))


Connect = Callable[..., Any]


@pytest.fixture(params=["Client", "AsyncClient"])
def connect(request: pytest.FixtureRequest) -> Iterator[Connect]:
    """Make a client of the one kind or the other: ``connect(url, token)``."""
    made: list[Any] = []
    with asyncio.Runner() as runner:

        def make(url: str | None = None, token: str | None = None, **options: Any) -> Any:
            if request.param == "Client":
                client = jobplane.Client(url, token, **options)
                made.append(client.close)
                return client
            async_client = jobplane.AsyncClient(url, token, **options)
            made.append(lambda: runner.run(async_client.aclose()))
            return Blocking(async_client, runner)

        yield make
        for close in made:
            close()


@pytest.fixture
def api_url(api_factory: Callable[..., httpx.Client], pg_settings: Settings) -> str:
    """A live API that needs ``TOKEN`` (``READ_ONLY_TOKEN`` may only read)."""
    settings = pg_settings.model_copy(
        update={"api_token": TOKEN, "read_only_token": READ_ONLY_TOKEN}
    )
    return str(api_factory(settings).base_url)


def run(engine: Engine, task_id: str, *, result: Any = None, error: str | None = None) -> None:
    """What a worker does to the task's row: claim it, then complete or fail it."""
    with engine.begin() as conn:
        assert store.claims.claim_task(conn, task_id, 1, worker="w:1", now=utcnow())
        if error is None:
            assert store.claims.complete_task(conn, task_id, 1, result=result, now=utcnow())
        else:
            assert store.claims.fail_task(conn, task_id, 1, error=error, now=utcnow())


def test_submit_get_and_list_answer_typed_tasks(connect: Connect, api_url: str) -> None:
    # Given a client of the API
    client = connect(api_url, TOKEN)

    # When a task is submitted with every option
    before = datetime.now(UTC)
    task = client.submit(
        "demo.sleep",
        {"seconds": 0.5},
        queue="reports",
        priority=9,
        delay=60,
        max_retries=2,
        timeout=30,
        idempotency_key="report-1",
    )

    # Then it comes back typed, each option in its field
    assert isinstance(task, jobplane.Task)
    assert (task.task_type, task.queue, task.priority) == ("demo.sleep", "reports", 9)
    assert task.status == "pending" and not task.status.is_terminal
    assert (task.params, task.max_retries, task.timeout_seconds) == ({"seconds": 0.5}, 2, 30)
    assert task.created_at.tzinfo is not None and task.created_at >= before - timedelta(seconds=5)
    assert task.run_after >= task.created_at + timedelta(seconds=59)
    assert (task.result, task.started_at, task.cancel_requested) == (None, None, False)
    assert task.raw["taskId"] == task.task_id  # the API's JSON, as it came

    # And get reads the same task; the same key and body answer the same task again
    assert client.get(task.task_id) == task
    again = client.submit(
        "demo.sleep",
        {"seconds": 0.5},
        queue="reports",
        priority=9,
        delay=60,
        max_retries=2,
        timeout=30,
        idempotency_key="report-1",
    )
    assert again.task_id == task.task_id

    # And a batch gives its ids in order; the list shows them all, newest first
    ids = client.submit_batch([{"type": "demo.noop"}, {"type": "demo.echo", "params": {"n": 2}}])
    assert len(ids) == 2 and client.get(ids[1]).params == {"n": 2}
    page = client.list_tasks(page_size=2)
    assert isinstance(page, jobplane.TaskPage)
    assert (page.total, page.page, page.page_size) == (3, 1, 2)
    assert {summary.task_id for summary in page.tasks} <= {task.task_id, *ids}
    assert [t.task_id for t in client.list_tasks(type="demo.sleep").tasks] == [task.task_id]


def test_cancel_retry_and_logs(connect: Connect, api_url: str, pg_settings: Settings) -> None:
    # Given a pending task with two log lines
    client = connect(api_url, TOKEN)
    task_id = client.submit("demo.echo").task_id
    with store_engine(pg_settings) as engine, engine.begin() as conn:
        store.logs.append_logs(
            conn,
            [
                NewLogLine(task_id, level, text, utcnow())
                for level, text in (("INFO", "fetched 3 rows"), ("ERROR", "disk full"))
            ],
        )

    # When it is cancelled, then retried
    cancelled = client.cancel(task_id)
    retried = client.retry(task_id)

    # Then each answer is the task in its new state
    assert cancelled.status == "cancelled" and cancelled.cancelled_at is not None
    assert retried.status == "pending" and retried.retry_count == 0

    # And its log comes in typed lines, paged and filtered by level
    first = client.logs(task_id, page_size=1)
    assert isinstance(first, jobplane.LogPage)
    assert (first.total, first.page, first.page_size) == (2, 1, 1)
    assert [line.message for line in first.lines] == ["fetched 3 rows"]
    assert first.lines[0].level == "INFO" and first.lines[0].created_at.tzinfo is not None
    assert [line.message for line in client.logs(task_id, page=2, page_size=1).lines] == [
        "disk full"
    ]
    assert [line.message for line in client.logs(task_id, level="error").lines] == ["disk full"]


def test_wait_answers_the_result_or_raises_how_the_task_ended(
    connect: Connect, api_url: str, pg_settings: Settings
) -> None:
    client = connect(api_url, TOKEN)
    waiting, failing, cancelled, pending = (client.submit("demo.echo").task_id for _ in range(4))
    with store_engine(pg_settings) as engine, ThreadPoolExecutor(1) as pool:
        # Given a client waiting for a task (with no time limit), when a worker completes it
        result = pool.submit(client.wait, waiting)
        run(engine, waiting, result={"rows": 3})
        # Then the wait answers its result
        assert result.result(timeout=30) == {"rows": 3}

        # A failed task raises TaskFailed with its error; a cancelled one TaskCancelled
        run(engine, failing, error="ValueError: bad month")
        with pytest.raises(jobplane.TaskFailed) as failed:
            client.wait(failing, timeout=30)
        assert failed.value.error == "ValueError: bad month"
        assert failed.value.task_id == failing
        client.cancel(cancelled)
        with pytest.raises(jobplane.TaskCancelled):
            client.wait(cancelled, timeout=30)

    # A task that stays pending: TimeoutError once the timeout has passed, not before
    started = time.monotonic()
    with pytest.raises(TimeoutError, match="still pending"):
        client.wait(pending, timeout=0.5)
    assert 0.5 <= time.monotonic() - started < 10


def test_each_refusal_of_the_api_is_the_library_exception(connect: Connect, api_url: str) -> None:
    client = connect(api_url, TOKEN)
    task_id = client.submit("demo.echo", idempotency_key="k").task_id

    with pytest.raises(jobplane.TaskNotFound, match="no task with id 'missing'") as missing:
        client.get("missing")
    assert missing.value.http_status == 404

    with pytest.raises(jobplane.UnknownJobType, match="unknown job type 'nope'") as unknown:
        client.submit("nope")
    assert "demo.echo" in unknown.value.known
    with pytest.raises(jobplane.InvalidParams):
        client.submit("demo.sleep", {"nope": 1})  # not in the job's signature
    with pytest.raises(jobplane.InvalidParams, match="priority"):
        client.submit("demo.echo", priority=5000)  # out of range
    with pytest.raises(jobplane.InvalidParams, match="must not be empty"):
        client.submit("demo.echo", idempotency_key="")
    with pytest.raises(jobplane.UnknownJobType, match=r"tasks\[1\]"):
        client.submit_batch([{"type": "demo.noop"}, {"type": "nope"}])

    with pytest.raises(jobplane.ParamsTooLarge) as too_large:
        client.submit("demo.echo", {"blob": "x" * 70_000})
    assert too_large.value.http_status == 413

    with pytest.raises(jobplane.IdempotencyConflict) as conflict:
        client.submit("demo.echo", {"other": 1}, idempotency_key="k")
    assert conflict.value.task_id == task_id
    client.cancel(task_id)
    with pytest.raises(jobplane.InvalidTransition, match="already cancelled") as transition:
        client.cancel(task_id)
    assert transition.value.status == "cancelled"

    with pytest.raises(jobplane.ScheduleNotFound):
        client.run_schedule("no-such-schedule")

    with pytest.raises(jobplane.Unauthorized, match="missing bearer token") as no_token:
        connect(api_url, "").get(task_id)
    assert no_token.value.http_status == 401
    reader = connect(api_url, READ_ONLY_TOKEN)
    assert reader.get(task_id).task_id == task_id
    with pytest.raises(jobplane.Unauthorized, match="read-only") as read_only:
        reader.retry(task_id)
    assert read_only.value.http_status == 403


def test_an_unreachable_api_or_database_is_api_unavailable(
    connect: Connect, api_factory: Callable[..., httpx.Client]
) -> None:
    # An API nobody listens on
    with pytest.raises(jobplane.ApiUnavailable, match="cannot reach the API") as down:
        connect("http://127.0.0.1:1").get("x")
    assert (down.value.http_status, down.value.retry_after) == (None, None)

    # An API whose database is unreachable: 503, and when to try again
    settings = Settings(database_url="postgresql+psycopg://postgres@127.0.0.1:1/none")
    url = str(api_factory(settings).base_url)
    with pytest.raises(jobplane.ApiUnavailable, match="database is unreachable") as no_db:
        connect(url).submit("demo.noop")
    assert (no_db.value.http_status, no_db.value.retry_after) == (503, 5.0)


def test_the_url_and_token_default_to_the_environment(
    connect: Connect, api_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JOBPLANE_URL", api_url + "/")
    monkeypatch.setenv("JOBPLANE_API_TOKEN", TOKEN)
    client = connect()
    assert client.submit("demo.noop").task_type == "demo.noop"


def test_a_client_closed_by_its_with_block_sends_nothing_more(api_url: str) -> None:
    with jobplane.Client(api_url, TOKEN) as client:
        client.submit("demo.noop")
    with pytest.raises(RuntimeError, match="closed"):
        client.submit("demo.noop")

    async def submit_after_the_block() -> None:
        async with jobplane.AsyncClient(api_url, TOKEN) as async_client:
            ids = await asyncio.gather(*(async_client.submit("demo.noop") for _ in range(3)))
            assert len({task.task_id for task in ids}) == 3
        await async_client.submit("demo.noop")

    with pytest.raises(RuntimeError, match="closed"):
        asyncio.run(submit_after_the_block())


@contextmanager
def store_engine(settings: Settings) -> Iterator[Engine]:
    """An engine of the test's database, disposed at the end."""
    engine = make_engine(settings.database_url)
    try:
        yield engine
    finally:
        engine.dispose()


def test_a_wait_the_api_has_no_room_for_is_asked_again_after_retry_after(
    api_factory: Callable[..., httpx.Client],
    pg_settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given an API that holds one long poll at most, holding one on a pending task
    settings = pg_settings.model_copy(update={"api_token": TOKEN, "max_task_waits": 1})
    api = api_factory(settings, token=TOKEN)
    first, second = (api.post("/api/tasks", json={"type": "demo.noop"}).json() for _ in "ab")
    engine = make_engine(settings.database_url)
    refused = threading.Event()
    real_sleep = time.sleep

    def sleep(seconds: float) -> None:  # the client's pauses, watched
        if seconds >= 1:
            refused.set()
        real_sleep(seconds)

    monkeypatch.setattr("jobplane.library.client.time.sleep", sleep)
    with ThreadPoolExecutor(2) as pool, jobplane.Client(str(api.base_url), TOKEN) as client:
        held = pool.submit(api.get, f"/api/tasks/{first['taskId']}", params={"wait": 30})
        wait_until(
            lambda: (
                api.get(f"/api/tasks/{second['taskId']}", params={"wait": 1}).status_code == 503
            ),
            what="the API to hold the first wait",
        )

        # When a client waits for the second task and is told to come back, and both
        # tasks end meanwhile
        def finish_both() -> None:
            refused.wait(30)
            run(engine, first["taskId"], result=1)
            run(engine, second["taskId"], result=2)

        finishing = pool.submit(finish_both)
        # Then the client asked again after Retry-After and has the second's result
        assert client.wait(second["taskId"], timeout=30) == 2
        assert refused.is_set()
        finishing.result(timeout=10)
        assert held.result(timeout=10).json()["result"] == 1
    engine.dispose()


def test_workflows_round_trip_as_typed_results(
    connect: Connect, api_url: str, pg_settings: Settings
) -> None:
    # Given a client, and a workflow written with the library's own nodes
    client = connect(api_url, TOKEN)
    echo = jobplane.Step(Submission(type="demo.echo", params={"n": 1}, priority=4))
    takes = jobplane.Step(Submission(type="demo.echo"), pipe_result=True)
    tree = jobplane.chain(echo, jobplane.group(echo, echo).then(takes))

    # When it is submitted, then it comes back with its steps in order
    workflow = client.submit_workflow(tree)
    assert isinstance(workflow, jobplane.Workflow)
    assert workflow.status == jobplane.domain.WorkflowStatus.RUNNING
    assert workflow.step_count == 4
    assert [step.waiting_on for step in workflow.steps] == [0, 1, 1, 2]
    assert workflow.steps[0].priority == 4
    assert {step.workflow_id for step in workflow.steps} == {workflow.workflow_id}
    assert client.get(workflow.steps[3].task_id).workflow_id == workflow.workflow_id
    # And a dict is sent as the body itself; a lone step as a chain of one
    other = client.submit_workflow({"group": [{"type": "demo.noop"}]})
    lone = client.submit_workflow(jobplane.Step(Submission(type="demo.noop")))
    assert lone.shape == {"chain": [lone.steps[0].task_id]}

    # And the list pages them, newest first, filtered by status
    page = client.workflows(page_size=2)
    assert (page.total, page.page, page.page_size, len(page.workflows)) == (3, 1, 2, 2)
    assert isinstance(page.workflows[0], jobplane.WorkflowSummary)
    assert client.workflows(status="completed").total == 0

    # And cancel and retry answer the workflow, or the library's exceptions
    assert client.cancel_workflow(other.workflow_id).status == "cancelled"
    with pytest.raises(jobplane.InvalidTransition):
        client.cancel_workflow(other.workflow_id)
    assert client.retry_workflow(other.workflow_id).status == "running"
    with pytest.raises(jobplane.WorkflowNotFound):
        client.workflow("missing")
    with pytest.raises(jobplane.UnknownJobType, match=r"workflow\.chain\[1\]\.group\[0\]"):
        client.submit_workflow(jobplane.chain(echo, jobplane.group(jobplane.Step(Submission("x")))))

    # And once every step completed, the detail holds the workflow's result
    engine = make_engine(pg_settings.database_url)
    try:
        ids = [step.task_id for step in lone.steps]
        run(engine, ids[0], result={"done": True})
        done = client.workflow(lone.workflow_id)
    finally:
        engine.dispose()
    assert (done.status, done.percent, done.result) == ("completed", 100, {"done": True})


def test_a_step_with_a_delay_is_refused_before_it_is_sent(api_url: str) -> None:
    with jobplane.Client(api_url, TOKEN) as client:
        delayed = jobplane.Step(Submission(type="demo.noop", delay_seconds=5))
        with pytest.raises(jobplane.InvalidParams, match=r"workflow\.chain\[0\]: .*no delay"):
            client.submit_workflow(jobplane.chain(delayed))


def test_a_workflow_sent_again_with_its_idempotency_key_is_the_first_one(
    connect: Connect, api_url: str
) -> None:
    # Given a workflow submitted with a key
    client = connect(api_url, TOKEN)
    echo = jobplane.Step(Submission(type="demo.echo", params={"n": 1}))
    tree = jobplane.chain(echo, jobplane.group(echo, echo))
    first = client.submit_workflow(tree, idempotency_key="wf-1")

    # When it is sent again (a retry after a timeout), then it is the same workflow
    again = client.submit_workflow(tree, idempotency_key="wf-1")
    assert again.workflow_id == first.workflow_id
    assert again.steps == first.steps
    assert client.workflows().total == 1

    # And another workflow under that key, or an empty key, is refused
    with pytest.raises(jobplane.IdempotencyConflict) as conflict:
        client.submit_workflow(jobplane.chain(echo), idempotency_key="wf-1")
    assert (conflict.value.workflow_id, conflict.value.task_id) == (first.workflow_id, None)
    assert conflict.value.http_status == 409
    with pytest.raises(jobplane.InvalidParams, match="must not be empty"):
        client.submit_workflow(tree, idempotency_key="")
    assert client.workflows().total == 1
