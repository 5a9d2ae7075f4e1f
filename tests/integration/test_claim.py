"""The claim: a real Dramatiq worker over Redis, with the task lifecycle, on PostgreSQL.

Invariant 2: at-least-once delivery, at-most-once start per attempt. Every message that
cannot claim its row (a duplicate, a stale one, one for a missing or cancelled task) is
dropped, says why, and never starts the body.
"""

from __future__ import annotations

import logging
import re
import threading
import uuid
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import dramatiq
import pytest
from sqlalchemy import Connection, Engine, Row, update

from jobplane import service, store
from jobplane.broker import state as broker_state
from jobplane.models import Task, utcnow
from jobplane.outbox.publisher import publish
from jobplane.outbox.relay import Relay
from jobplane.registry import load_jobs
from jobplane.settings import Settings
from tests.conftest import wait_until


@pytest.fixture(autouse=True)
def _jobs() -> None:
    load_jobs()


def submit(engine: Engine, settings: Settings, job: str = "demo.noop", **params: Any) -> str:
    with engine.begin() as conn:
        row, _ = service.submit(
            conn, service.Submission(type=job, params=params), settings, utcnow()
        )
    return row.id


def publish_message(
    broker: dramatiq.Broker, task_id: str, dispatch: int = 1, job: str = "demo.noop"
) -> None:
    """Publish one message as the relay does, for any task id and dispatch number."""
    row = SimpleNamespace(
        queue="default", type=job, task_id=task_id, dispatch=dispatch, timeout_seconds=60
    )
    publish(broker, row)  # type: ignore[arg-type]


def task(engine: Engine, task_id: str) -> Row[Any]:
    with engine.connect() as conn:
        row = store.tasks.get_task(conn, task_id)
    assert row is not None
    return row


def drops(caplog: pytest.LogCaptureFixture, task_id: str) -> list[tuple[int, str]]:
    """(dispatch, reason) of each message of ``task_id`` the lifecycle said it dropped."""
    line = re.compile(rf"task {task_id} \(dispatch (\d+)\): (.+)$")
    found = [
        line.search(record.getMessage())
        for record in caplog.records
        if record.name == "jobplane.workers.lifecycle" and record.levelno == logging.INFO
    ]
    return [(int(match[1]), match[2]) for match in found if match]


def assert_dropped_and_acked(
    caplog: pytest.LogCaptureFixture, publisher: dramatiq.Broker, task_id: str, reason: str
) -> None:
    """The task's one message was dropped for ``reason``, then acked off the queue."""
    (dropped,) = wait_until(lambda: drops(caplog, task_id), what="the drop to be logged")
    assert dropped == (1, reason)
    wait_until(
        lambda: not broker_state.queue_holds_messages(publisher, "default"),
        what="the message to be acked",
    )


def test_a_duplicate_message_does_not_start_the_body_twice(
    pg_engine: Engine,
    pg_settings: Settings,
    publisher: dramatiq.Broker,
    start_worker: Callable[[], dramatiq.Broker],
    lifecycle_log: pytest.LogCaptureFixture,
) -> None:
    # Given a task whose message was published twice (a relay that crashed before its commit)
    task_id = submit(pg_engine, pg_settings, "demo.sleep", seconds=0.3)
    publish_message(publisher, task_id, job="demo.sleep")
    publish_message(publisher, task_id, job="demo.sleep")

    # When a worker with two threads takes both messages
    start_worker()

    # Then the task completes after one start, and the other message is dropped, saying why
    wait_until(lambda: task(pg_engine, task_id).status == "completed", what="completion")
    (dropped,) = wait_until(lambda: drops(lifecycle_log, task_id), what="the drop to be logged")
    assert dropped in [
        (1, "task is running"),
        (1, "task is completed"),
        (1, "task was claimed concurrently"),
    ]
    done = task(pg_engine, task_id)
    assert done.attempts == 1
    assert done.result == {"slept": 0.3, "steps": 1}
    wait_until(
        lambda: not broker_state.queue_holds_messages(publisher, "default"),
        what="both messages to be acked",
    )


def test_a_stale_message_cannot_claim_a_republished_task(
    pg_engine: Engine,
    pg_settings: Settings,
    publisher: dramatiq.Broker,
    start_worker: Callable[[], dramatiq.Broker],
    lifecycle_log: pytest.LogCaptureFixture,
) -> None:
    # Given a task published once, then republished (dispatch 2) before any worker ran
    task_id = submit(pg_engine, pg_settings)
    relay = Relay(pg_engine, publisher, pg_settings)
    assert relay.drain() == 1
    now = utcnow()
    with pg_engine.begin() as conn:
        store.recovery.republish_pending(conn, now=now)

    # When a worker receives the first publication's message
    start_worker()

    # Then the stale message is dropped and the task stays pending, never started
    (dropped,) = wait_until(lambda: drops(lifecycle_log, task_id), what="the drop to be logged")
    assert dropped == (1, "stale message (dispatch 1, task is at 2)")
    wait_until(
        lambda: not broker_state.queue_holds_messages(publisher, "default"),
        what="the stale message to be acked",
    )
    stale = task(pg_engine, task_id)
    assert (stale.status, stale.attempts, stale.dispatch) == ("pending", 0, 2)

    # When the republication is published
    assert relay.drain() == 1

    # Then its message runs the task, once
    wait_until(lambda: task(pg_engine, task_id).status == "completed", what="completion")
    assert task(pg_engine, task_id).attempts == 1


def test_a_message_for_a_missing_task_is_dropped_without_error(
    pg_engine: Engine,
    pg_settings: Settings,
    publisher: dramatiq.Broker,
    start_worker: Callable[[], dramatiq.Broker],
    lifecycle_log: pytest.LogCaptureFixture,
) -> None:
    # Given a message for a task id that has no row
    missing = str(uuid.uuid4())
    publish_message(publisher, missing)

    # When a worker receives it
    start_worker()

    # Then it is dropped as "no such task", acked, and nothing is logged as an error
    assert_dropped_and_acked(lifecycle_log, publisher, missing, "no such task")
    assert [r.getMessage() for r in lifecycle_log.records if r.levelno >= logging.ERROR] == []

    # and the worker goes on running the next task
    task_id = submit(pg_engine, pg_settings)
    publish_message(publisher, task_id)
    wait_until(lambda: task(pg_engine, task_id).status == "completed", what="the next task")


def cancel_as_the_api_does(conn: Connection, task_id: str) -> None:
    store.tasks.cancel_task(conn, task_id, utcnow())


def request_cancellation_only(conn: Connection, task_id: str) -> None:
    """A cancel request still pending on the row (the status left for a worker to change)."""
    conn.execute(update(Task).where(Task.id == task_id).values(cancel_requested=True))


@pytest.mark.parametrize(
    ("cancel", "status"),
    [
        pytest.param(cancel_as_the_api_does, "cancelled", id="cancelled"),
        pytest.param(request_cancellation_only, "pending", id="cancel-requested"),
    ],
)
def test_the_message_of_a_cancelled_task_is_dropped(
    cancel: Callable[[Connection, str], None],
    status: str,
    pg_engine: Engine,
    pg_settings: Settings,
    publisher: dramatiq.Broker,
    start_worker: Callable[[], dramatiq.Broker],
    lifecycle_log: pytest.LogCaptureFixture,
) -> None:
    # Given a published task that was cancelled before any worker took it
    task_id = submit(pg_engine, pg_settings)
    assert Relay(pg_engine, publisher, pg_settings).drain() == 1
    with pg_engine.begin() as conn:
        cancel(conn, task_id)

    # When a worker receives its message
    start_worker()

    # Then the message is dropped and the task never starts
    assert_dropped_and_acked(lifecycle_log, publisher, task_id, "task is cancelled")
    cancelled = task(pg_engine, task_id)
    assert (cancelled.status, cancelled.attempts, cancelled.started_at) == (status, 0, None)


def test_only_one_of_many_concurrent_claims_of_one_publication_wins(
    pg_engine: Engine, pg_settings: Settings
) -> None:
    # Given a pending task and eight workers holding the same message
    task_id = submit(pg_engine, pg_settings)
    start = threading.Barrier(8)
    won: list[bool] = []

    def claim(worker: int) -> None:
        start.wait()
        with pg_engine.begin() as conn:
            row = store.claims.claim_task(conn, task_id, 1, worker=f"w{worker}", now=utcnow())
        won.append(row is not None)

    # When they all claim it at once
    threads = [threading.Thread(target=claim, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    # Then exactly one claim succeeds and the task was started once
    assert sorted(won) == [False] * 7 + [True]
    claimed = task(pg_engine, task_id)
    assert (claimed.status, claimed.attempts) == ("running", 1)
    with pg_engine.connect() as conn:
        assert store.claims.why_not_claimable(conn, task_id, 1, utcnow()) == "task is running"


@pytest.fixture(params=["postgresql", "sqlite"])
def any_engine(request: pytest.FixtureRequest) -> Engine:
    """The batched claim has a PostgreSQL statement and a per-row form elsewhere."""
    fixture = "pg_engine" if request.param == "postgresql" else "sqlite_engine"
    engine: Engine = request.getfixturevalue(fixture)
    return engine


def test_a_batch_of_claims_gives_each_publication_its_row_once(
    any_engine: Engine, pg_settings: Settings
) -> None:
    first, second, stale = (submit(any_engine, pg_settings) for _ in range(3))
    missing = str(uuid.uuid4())
    claims = [(second, 1), (first, 1), (first, 1), (stale, 2), (missing, 1)]

    with any_engine.begin() as conn:
        rows = store.claims.claim_tasks(conn, claims, worker="test:1", now=utcnow())

    assert [row.id if row else None for row in rows] == [second, first, None, None, None]
    assert [task(any_engine, t).status for t in (first, second, stale)] == [
        "running",
        "running",
        "pending",
    ]
    assert task(any_engine, first).attempts == 1


def test_a_batch_of_completions_records_each_result_of_its_own_attempt(
    any_engine: Engine, pg_settings: Settings
) -> None:
    done, also_done, never_claimed = (submit(any_engine, pg_settings) for _ in range(3))
    with any_engine.begin() as conn:
        store.claims.claim_tasks(conn, [(done, 1), (also_done, 1)], worker="test:1", now=utcnow())
        flags = store.claims.complete_tasks(
            conn,
            [(done, 1, {"rows": 3}), (also_done, 1, None), (never_claimed, 1, "x"), (done, 1, 0)],
            utcnow(),
        )

    assert flags == [True, True, False, False]
    assert (task(any_engine, done).status, task(any_engine, done).result) == (
        "completed",
        {"rows": 3},
    )
    assert task(any_engine, also_done).result is None
    assert task(any_engine, never_claimed).status == "pending"
