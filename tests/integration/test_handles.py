"""``TaskHandle`` against real databases: what ``wait`` returns and raises, and what wakes it.

Tasks are finished here by the store's own statements (what a worker's lifecycle runs),
from another thread and connection than the waiter's.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import replace
from typing import Any

import dramatiq
import pytest
from sqlalchemy import Engine, insert, text

import jobplane
from jobplane import service, store
from jobplane.library import waiting
from jobplane.library.engine import reset_default_engine
from jobplane.models import Task, utcnow
from jobplane.outbox.relay import Relay
from jobplane.service import Submission
from jobplane.settings import Settings
from jobplane.store.rows import TaskRow
from jobplane.workers.jobs import demo
from tests.conftest import wait_until

#: A wait's limit in the tests that finish the task: never reached when they pass.
LONG = 30.0
#: What "woken promptly" means here: far below ``LONG``, far above any commit's latency.
PROMPTLY = 5.0


@pytest.fixture
def executor() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(max_workers=4) as pool:
        yield pool


@pytest.fixture
def no_safety_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    """Waiters re-read only when woken: a wait that ends in time was woken by a NOTIFY."""
    monkeypatch.setattr(waiting, "SAFETY_INTERVAL", 10 * LONG)


def running_task(engine: Engine, **values: Any) -> TaskRow:
    """A demo.echo task inserted as running (claimed by a worker)."""
    row = replace(
        service.build_task(Submission(type="demo.echo", params={"n": 1}), Settings(), utcnow()),
        status="running",
        attempts=1,
        **values,
    )
    with engine.begin() as conn:
        conn.execute(insert(Task), [row.columns()])
    return row


def pending_task(engine: Engine) -> TaskRow:
    row = service.build_task(Submission(type="demo.noop"), Settings(), utcnow())
    with engine.begin() as conn:
        store.tasks.insert_tasks(conn, [row])
    return row


def complete(engine: Engine, task: TaskRow, result: Any) -> None:
    with engine.begin() as conn:
        assert store.claims.complete_task(conn, task.id, task.dispatch, result=result, now=utcnow())


def listening(engine: Engine) -> bool:
    """Whether some connection of the test database LISTENs on the task-done channel."""
    with engine.connect() as conn:
        return bool(conn.execute(text(LISTENERS)).all())


LISTENERS = (
    "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
    "AND query = 'LISTEN jobplane_task_done'"
)


def waiting_for(engine: Engine, task_id: str) -> Callable[[], bool]:
    """Whether a waiter of this process registered for ``task_id`` and the LISTEN is on."""
    if engine.dialect.name != "postgresql":
        return lambda: True
    listener = waiting.listener_for(engine)
    return lambda: task_id in listener.watched() and listening(engine)


def test_wait_returns_the_result_of_a_task_that_completes_meanwhile(
    any_engine: Engine, executor: ThreadPoolExecutor, no_safety_reads: None
) -> None:
    # Given a running task and a thread waiting for it
    task = running_task(any_engine)
    handle = jobplane.task(task.id, engine=any_engine)
    waited: Future[Any] = executor.submit(handle.wait, LONG)
    wait_until(waiting_for(any_engine, task.id), what="the waiter to listen")

    # When another connection completes it
    finished_at = time.monotonic()
    complete(any_engine, task, {"answer": 42})

    # Then the waiter returns its result, woken by the commit (PostgreSQL's NOTIFY;
    # SQLite's polling) long before its timeout, and the handle shows the final state
    assert waited.result(timeout=LONG) == {"answer": 42}
    assert time.monotonic() - finished_at < PROMPTLY
    assert (handle.status, handle.result, handle.error) == ("completed", {"answer": 42}, None)


def test_wait_raises_task_failed_with_the_error_of_a_failed_task(
    pg_engine: Engine, executor: ThreadPoolExecutor, no_safety_reads: None
) -> None:
    # Given a waiter on a running task
    task = running_task(pg_engine)
    waited = executor.submit(jobplane.task(task.id, engine=pg_engine).wait, LONG)
    wait_until(waiting_for(pg_engine, task.id), what="the waiter to listen")

    # When its last attempt fails
    with pg_engine.begin() as conn:
        store.claims.fail_task(conn, task.id, task.dispatch, error="ValueError: no", now=utcnow())

    # Then the waiter gets TaskFailed with the task's id and error
    with pytest.raises(jobplane.TaskFailed) as failed:
        waited.result(timeout=LONG)
    assert (failed.value.task_id, failed.value.error) == (task.id, "ValueError: no")
    assert "ValueError: no" in str(failed.value)


def test_cancel_through_the_handle_makes_its_wait_raise_task_cancelled(any_engine: Engine) -> None:
    # Given a pending task's handle
    handle = jobplane.task(pending_task(any_engine).id, engine=any_engine)
    assert handle.status == "pending"

    # When it is cancelled through the handle
    handle.cancel()

    # Then it is cancelled, and waiting for it says so at once
    assert handle.status == "cancelled"
    with pytest.raises(jobplane.TaskCancelled):
        handle.wait(LONG)
    # And cancelling a finished task is refused, as the admin API refuses it
    with pytest.raises(jobplane.JobplaneError, match="already cancelled"):
        handle.cancel()


def test_wait_on_an_unfinished_task_raises_timeout_error_after_the_timeout(
    any_engine: Engine,
) -> None:
    handle = jobplane.task(pending_task(any_engine).id, engine=any_engine)
    started = time.monotonic()
    with pytest.raises(TimeoutError, match="still pending"):
        handle.wait(timeout=0.3)
    assert time.monotonic() - started >= 0.3
    assert handle.status == "pending"


def test_a_skipped_run_raises_task_failed_with_its_reason(pg_engine: Engine) -> None:
    task = running_task(pg_engine)
    with pg_engine.begin() as conn:
        conn.execute(
            text("UPDATE jobplane_tasks SET status = 'skipped', error = 'missed' WHERE id = :id"),
            {"id": task.id},
        )
    with pytest.raises(jobplane.TaskFailed, match="skipped: missed"):
        jobplane.task(task.id, engine=pg_engine).wait(LONG)


def test_an_unknown_task_raises_task_not_found(any_engine: Engine) -> None:
    handle = jobplane.task(str(uuid.uuid4()), engine=any_engine)
    with pytest.raises(jobplane.TaskNotFound):
        handle.wait(LONG)
    with pytest.raises(jobplane.TaskNotFound):
        handle.refresh()


def test_many_threads_wait_on_one_listening_connection(
    pg_engine: Engine, executor: ThreadPoolExecutor, no_safety_reads: None
) -> None:
    # Given four threads waiting, two of them for the same task
    tasks = [running_task(pg_engine) for _ in range(3)]
    waits = [
        executor.submit(jobplane.task(task.id, engine=pg_engine).wait, LONG)
        for task in [*tasks, tasks[0]]
    ]
    listener = waiting.listener_for(pg_engine)
    wait_until(lambda: listener.watched() == {task.id for task in tasks} and listening(pg_engine))

    # When the tasks complete in one statement
    with pg_engine.begin() as conn:
        store.claims.complete_tasks(conn, [(t.id, t.dispatch, t.id) for t in tasks], utcnow())

    # Then every waiter has its own task's result, and one connection listened for all
    assert [w.result(timeout=LONG) for w in waits] == [*(t.id for t in tasks), tasks[0].id]
    with pg_engine.connect() as conn:
        assert len(conn.execute(text(LISTENERS)).all()) == 1


def test_the_listener_reconnects_after_its_connection_is_killed(
    pg_engine: Engine, executor: ThreadPoolExecutor, no_safety_reads: None
) -> None:
    # Given a thread waiting for a running task, on the process's listener
    task = running_task(pg_engine)
    waited = executor.submit(jobplane.task(task.id, engine=pg_engine).wait, LONG)
    wait_until(waiting_for(pg_engine, task.id), what="the waiter to listen")
    listener = waiting.listener_for(pg_engine)
    killed = listener.backend_pid

    # When the listening connection is killed, and the listener is back
    with pg_engine.connect() as conn:
        conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": killed})
    wait_until(
        lambda: listener.backend_pid not in (None, killed) and listening(pg_engine),
        what="the listener to reconnect",
    )
    # and the task completes
    complete(pg_engine, task, "after the reconnect")

    # Then the waiter is woken by the new connection's notification
    assert waited.result(timeout=LONG) == "after the reconnect"


def test_delay_then_wait_returns_the_result_or_raises_the_failure_of_a_real_worker(
    pg_url: str,
    pg_engine: Engine,
    pg_settings: Settings,
    publisher: dramatiq.Broker,
    start_worker: Callable[[], dramatiq.Broker],
    executor: ThreadPoolExecutor,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given the library pointed at the database, a job that returns and one whose only
    # attempt fails, submitted with .delay / .apply, published, and their waiters
    monkeypatch.setenv("JOBPLANE_DATABASE_URL", pg_url)
    reset_default_engine()
    try:
        echo = demo.echo.delay(month="2026-10")
        failing = demo.fail.apply({"times": 1}, max_retries=0)
        assert Relay(pg_engine, publisher, pg_settings).drain() == 2
        waits = [executor.submit(handle.wait, LONG) for handle in (echo, failing)]

        # When a worker runs them (its lifecycle's group commit finishes them)
        start_worker()

        # Then one waiter has the result, the other the failure with its error
        assert waits[0].result(timeout=LONG) == {"month": "2026-10"}
        with pytest.raises(jobplane.TaskFailed, match="failing on purpose") as failed:
            waits[1].result(timeout=LONG)
        assert failed.value.task_id == failing.id and failing.refresh().status == "failed"
    finally:
        reset_default_engine()
