"""Exactly-once database effects: a job's ``ctx.transaction()`` commits with its completion.

A real Dramatiq worker over Redis runs the jobs of ``tests.effects_jobs`` on PostgreSQL;
each test counts the rows the jobs wrote to a table of the tests' own. The worker killed
with SIGKILL is in tests/e2e/test_effects_crash.py.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import dramatiq
import pytest
from sqlalchemy import Engine, delete, select, text
from sqlalchemy.orm import Session

from jobplane import service, store
from jobplane.db import SQLITE_BUSY_TIMEOUT_MS, make_engine
from jobplane.migrate import upgrade
from jobplane.models import Outbox, Task, utcnow
from jobplane.outbox.relay import Relay
from jobplane.registry import load_jobs
from jobplane.settings import Settings
from tests import services
from tests.conftest import wait_until
from tests.effects_jobs import Base, EffectsWrite, Reservation, reached, release
from tests.integration.conftest import Workers
from tests.integration.test_claim import drops, publish_message, task

WRITE = "test.effects.write"


@pytest.fixture(autouse=True)
def _jobs() -> None:
    load_jobs(["tests.effects_jobs"])


@pytest.fixture
def user_tables(pg_engine: Engine) -> Engine:
    """The tests' own table, made as an application makes its models' tables."""
    Base.metadata.create_all(pg_engine)
    return pg_engine


@pytest.fixture
def relay(pg_engine: Engine, publisher: dramatiq.Broker, pg_settings: Settings) -> Relay:
    return Relay(pg_engine, publisher, pg_settings)


def submit(
    engine: Engine, settings: Settings, job: str, max_retries: int = 3, **params: Any
) -> str:
    submission = service.Submission(type=job, params=params, max_retries=max_retries)
    with engine.begin() as conn:
        row, _ = service.submit(conn, submission, settings, utcnow())
    return row.id


def writes(engine: Engine) -> list[tuple[str, int, int]]:
    """(key, attempt, fence token) of every row the jobs wrote."""
    with engine.connect() as conn:
        query = select(EffectsWrite.key, EffectsWrite.attempt, EffectsWrite.fence)
        return [tuple(row) for row in conn.execute(query.order_by(EffectsWrite.id))]


def finished(engine: Engine, task_id: str) -> Any:
    return wait_until(
        lambda: (
            (row := task(engine, task_id)).status in ("completed", "failed", "cancelled") and row
        ),
        what=f"task {task_id} to finish",
    )


def waiting_at(gates: Path, point: str, attempt: int = 1) -> None:
    wait_until(reached(str(gates), point, attempt).exists, what=f"attempt {attempt} at {point}")


def log_messages(engine: Engine, task_id: str) -> list[str]:
    with engine.connect() as conn:
        lines, _ = store.logs.list_logs(conn, task_id, level=None, offset=0, limit=10)
    return [line.message for line in lines]


def follow_ups(engine: Engine) -> int:
    """Tasks of the follow-up job (demo.noop), and that each has its outbox row."""
    with engine.connect() as conn:
        ids = conn.execute(select(Task.id).where(Task.type == "demo.noop")).scalars().all()
        published = conn.execute(select(Outbox.task_id).where(Outbox.task_id.in_(ids))).all()
    assert len(published) == len(ids)
    return len(ids)


def test_a_message_delivered_twice_writes_once(
    user_tables: Engine,
    pg_settings: Settings,
    publisher: dramatiq.Broker,
    start_worker: Workers,
    lifecycle_log: pytest.LogCaptureFixture,
    tmp_path: Path,
) -> None:
    # Given a task whose body wrote in its transaction and has not returned yet
    task_id = submit(user_tables, pg_settings, WRITE, key="k", gates=str(tmp_path), hold_at="after")
    publish_message(publisher, task_id, job=WRITE)
    start_worker()
    waiting_at(tmp_path, "after")

    # When its message is delivered a second time, to the worker's other thread
    publish_message(publisher, task_id, job=WRITE)
    wait_until(lambda: drops(lifecycle_log, task_id), what="the duplicate to be dropped")
    release(str(tmp_path), "after", 1)

    # Then the task completes with one write
    done = finished(user_tables, task_id)
    assert (done.status, done.attempts, done.result) == ("completed", 1, {"key": "k", "fence": 1})
    assert writes(user_tables) == [("k", 1, 1)]


@pytest.mark.parametrize("hold_at", ["inside", "after"])
def test_a_run_recovered_while_it_still_runs_writes_nothing_and_its_retry_writes_once(
    user_tables: Engine,
    pg_settings: Settings,
    publisher: dramatiq.Broker,
    start_worker: Workers,
    lifecycle_log: pytest.LogCaptureFixture,
    tmp_path: Path,
    hold_at: str,
) -> None:
    # Given a first attempt that wrote in its transaction (its block open, or ended and
    # waiting for the body's result) and was recovered as if its worker were lost
    task_id = submit(user_tables, pg_settings, WRITE, key="k", gates=str(tmp_path), hold_at=hold_at)
    publish_message(publisher, task_id, job=WRITE)
    start_worker()
    waiting_at(tmp_path, hold_at)
    with user_tables.begin() as conn:
        later = utcnow() + timedelta(hours=1)
        recovered = store.recovery.recover_stale_running(conn, stale_before=later, now=utcnow())
    assert recovered.retried == [task_id]

    # When the second attempt runs to its end on the other thread, then the first goes on
    publish_message(publisher, task_id, dispatch=2, job=WRITE)
    done = finished(user_tables, task_id)
    release(str(tmp_path), hold_at, 1)

    # Then the first attempt's transaction rolled back (its block raised StaleAttempt, or
    # its completion matched no row), and only the second attempt's write is in
    stale = "stale attempt" if hold_at == "inside" else "no longer the task's"
    wait_until(lambda: stale in lifecycle_log.text, what="the stale attempt to end")
    assert reached(str(tmp_path), "stale", 1).exists() == (hold_at == "inside")
    assert (done.status, done.attempts, done.result) == ("completed", 2, {"key": "k", "fence": 2})
    assert writes(user_tables) == [("k", 2, 2)]
    assert task(user_tables, task_id).status == "completed"


@pytest.mark.parametrize(
    ("hold_at", "cancel_check_interval"),
    [
        # The body is not interrupted in time: its block's end finds the cancellation.
        ("before", 60.0),
        # The worker interrupts the body inside its block.
        ("inside", 0.1),
    ],
)
def test_a_task_cancelled_before_its_block_ends_writes_nothing(
    user_tables: Engine,
    pg_settings: Settings,
    publisher: dramatiq.Broker,
    start_worker: Workers,
    tmp_path: Path,
    hold_at: str,
    cancel_check_interval: float,
) -> None:
    start_worker.settings = pg_settings.model_copy(
        update={"cancel_check_interval": cancel_check_interval}
    )
    task_id = submit(user_tables, pg_settings, WRITE, key="k", gates=str(tmp_path), hold_at=hold_at)
    publish_message(publisher, task_id, job=WRITE)
    start_worker()
    waiting_at(tmp_path, hold_at)

    with user_tables.begin() as conn:
        store.tasks.cancel_task(conn, task_id, utcnow())
    if hold_at == "before":
        release(str(tmp_path), hold_at, 1)

    assert finished(user_tables, task_id).status == "cancelled"
    assert reached(str(tmp_path), "stale", 1).exists() == (hold_at == "before")
    assert writes(user_tables) == []


def test_a_body_that_fails_after_its_block_leaves_no_write_and_its_retry_writes_once(
    user_tables: Engine,
    pg_settings: Settings,
    start_worker: Workers,
    relay: Relay,
) -> None:
    # Given a job that writes, and whose first attempt then raises
    task_id = submit(user_tables, pg_settings, WRITE, max_retries=1, key="k", then="raise")
    assert relay.drain() == 1
    start_worker()

    # When its retry (published as soon as it is due) fails the same way
    wait_until(lambda: task(user_tables, task_id).retry_count == 1, what="the first failure")
    assert writes(user_tables) == []
    wait_until(relay.drain, what="the retry to be published")

    # Then neither attempt's write is in
    done = finished(user_tables, task_id)
    assert (done.status, done.attempts) == ("failed", 2)
    assert done.error == "RuntimeError: the body failed after its transaction"
    assert writes(user_tables) == []


def test_a_limited_job_type_frees_its_slot_with_the_commit_of_its_transaction(
    user_tables: Engine, pg_settings: Settings, start_worker: Workers, relay: Relay, tmp_path: Path
) -> None:
    # Given two tasks of a type that runs one at a time: one holds the slot inside its
    # transaction, the other waits for it
    job, gates = "test.effects.one_at_a_time", str(tmp_path)
    first, second = (submit(user_tables, pg_settings, job, key=k, gates=gates) for k in "ab")
    assert relay.drain() == 2
    start_worker()
    waiting_at(tmp_path, "inside")
    wait_until(lambda: any(task(user_tables, t).waiting_since for t in (first, second)))

    # When the first commits, then the one that waited is woken, and both write once
    release(gates, "inside", 1)
    wait_until(relay.drain, what="the waiting task to be published again")
    assert [finished(user_tables, t).status for t in (first, second)] == ["completed"] * 2
    assert sorted(key for key, _, _ in writes(user_tables)) == ["a", "b"]


def test_the_write_errors_surface_at_the_end_of_the_block(
    user_tables: Engine, pg_settings: Settings, publisher: dramatiq.Broker, start_worker: Workers
) -> None:
    with user_tables.begin() as conn:
        conn.execute(EffectsWrite.__table__.insert().values(key="first", attempt=0, fence=0))
    task_id = submit(user_tables, pg_settings, "test.effects.duplicate_key", key="k")
    publish_message(publisher, task_id, job="test.effects.duplicate_key")
    start_worker()

    done = finished(user_tables, task_id)
    assert done.result == {"inside": "nothing yet", "at_the_block": "IntegrityError"}
    assert writes(user_tables) == [("first", 0, 0)]


def test_a_transaction_whose_commit_fails_leaves_no_write_and_is_retried(
    user_tables: Engine,
    pg_settings: Settings,
    start_worker: Workers,
    relay: Relay,
    lifecycle_log: pytest.LogCaptureFixture,
) -> None:
    # Given a key already reserved: the job's reservation of it fails at the commit
    with Session(user_tables) as session, session.begin():
        session.add(Reservation(key="k"))
    task_id = submit(user_tables, pg_settings, "test.effects.reserve", max_retries=1, key="k")
    assert relay.drain() == 1
    start_worker()

    # Then the attempt failed, with nothing written, and is retried
    pending = wait_until(
        lambda: (row := task(user_tables, task_id)).retry_count == 1 and row, what="the failure"
    )
    assert pending.status == "pending"
    assert pending.error.startswith("ctx.transaction() could not commit: UniqueViolation")
    assert "could not commit, so its writes are not in" in lifecycle_log.text
    assert writes(user_tables) == []

    # When the key is free again, the retry writes once
    with Session(user_tables) as session, session.begin():
        session.execute(delete(Reservation))
    wait_until(relay.drain, what="the retry to be published")
    assert finished(user_tables, task_id).status == "completed"
    assert writes(user_tables) == [("k", 2, 2)]


def test_a_second_transaction_in_one_body_is_refused(
    user_tables: Engine, pg_settings: Settings, publisher: dramatiq.Broker, start_worker: Workers
) -> None:
    task_id = submit(user_tables, pg_settings, "test.effects.twice", max_retries=0)
    publish_message(publisher, task_id, job="test.effects.twice")
    start_worker()

    done = finished(user_tables, task_id)
    assert done.status == "failed"
    assert done.error.startswith(
        "TransactionAlreadyUsed: a job body may open ctx.transaction() once"
    )


def test_a_requested_retry_is_due_after_exactly_its_delay_and_fails_once_none_is_left(
    user_tables: Engine, pg_settings: Settings, publisher: dramatiq.Broker, start_worker: Workers
) -> None:
    # Given a job that asks for a retry in 30 s, with one retry, then with none
    retried = submit(user_tables, pg_settings, "test.effects.retry", 1, delay=30, reason="busy")
    last = submit(user_tables, pg_settings, "test.effects.retry", 0, delay=30, reason="busy")
    start_worker()
    before = utcnow()
    publish_message(publisher, retried, job="test.effects.retry")
    publish_message(publisher, last, job="test.effects.retry")

    # Then the first is pending again, due 30 s after its attempt failed, no backoff added
    pending = wait_until(
        lambda: (row := task(user_tables, retried)).retry_count == 1 and row, what="the retry"
    )
    assert pending.status == "pending"
    assert before + timedelta(seconds=30) <= pending.run_after <= utcnow() + timedelta(seconds=30)
    assert pending.error == "retry requested in 30 s: busy"
    # And the one with no retry left failed, saying it was a requested retry and why
    failed = finished(user_tables, last)
    assert (failed.status, failed.error) == (
        "failed",
        "retry requested in 30 s: busy (no retry left)",
    )


def test_a_follow_up_enqueued_in_the_transaction_commits_with_the_completion(
    user_tables: Engine, pg_settings: Settings, start_worker: Workers, relay: Relay
) -> None:
    # Given a job that enqueues a follow-up in its transaction, and fails after the block
    failing = submit(user_tables, pg_settings, WRITE, 0, key="a", then="raise", follow_up=True)
    assert relay.drain() == 1
    start_worker()
    assert finished(user_tables, failing).status == "failed"
    # Then its follow-up rolled back with its write
    assert (follow_ups(user_tables), writes(user_tables)) == (0, [])

    # And once the same job succeeds, its follow-up is in, with its outbox row
    succeeding = submit(user_tables, pg_settings, WRITE, 0, key="b", follow_up=True)
    assert relay.drain() == 1
    assert finished(user_tables, succeeding).status == "completed"
    assert (follow_ups(user_tables), writes(user_tables)) == (1, [("b", 1, 1)])


def test_a_follow_up_enqueued_outside_a_transaction_stays_when_the_body_then_fails(
    user_tables: Engine, pg_settings: Settings, start_worker: Workers, relay: Relay
) -> None:
    task_id = submit(user_tables, pg_settings, "test.effects.follow_up_outside", 0, key="k")
    assert relay.drain() == 1
    start_worker()

    assert finished(user_tables, task_id).status == "failed"
    assert follow_ups(user_tables) == 1


SCHEMA = "jobs_here"


@pytest.fixture
def in_schema(postgres: None, redis_url: str) -> Iterator[tuple[Engine, Settings, Engine]]:
    """A database with jobplane's objects in a schema of their own: its engine and
    settings, and a plain engine (the user's, whose tables are in the default schema)."""
    name = f"jobplane_effects_schema_{os.getpid()}"
    services.admin_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    services.admin_execute(f'CREATE DATABASE "{name}"')
    url = services.pg_url(name)
    upgrade(url, schema=SCHEMA)
    engine, users = make_engine(url, schema=SCHEMA), make_engine(url)
    Base.metadata.create_all(users)
    yield engine, Settings(database_url=url, broker_url=redis_url, db_schema=SCHEMA), users
    engine.dispose()
    users.dispose()
    services.admin_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_with_a_db_schema_the_jobs_tables_stay_in_the_default_schema(
    in_schema: tuple[Engine, Settings, Engine],
    publisher: dramatiq.Broker,
    start_worker: Workers,
) -> None:
    # Given jobplane in a schema of its own, and the user's table in the default schema
    engine, settings, users = in_schema
    start_worker.engine, start_worker.settings = engine, settings
    task_id = submit(engine, settings, WRITE, key="k", follow_up=True)
    assert Relay(engine, publisher, settings).drain() == 1

    # When a worker runs a job that writes to the user's table in its transaction, and
    # enqueues a follow-up there
    start_worker()

    # Then the write is in the user's table, and the task completed and its follow-up
    # are in jobplane's schema
    assert finished(engine, task_id).status == "completed"
    assert writes(users) == [("k", 1, 1)]
    assert follow_ups(engine) == 1
    with users.connect() as conn:
        in_jobplane = conn.execute(text(f"SELECT type, status FROM {SCHEMA}.jobplane_tasks"))
        assert sorted(in_jobplane.all()) == [("demo.noop", "pending"), (WRITE, "completed")]


def test_on_sqlite_the_transaction_commits_with_the_completion_and_the_logs_follow(
    sqlite_url: str, redis_url: str, publisher: dramatiq.Broker, start_worker: Workers
) -> None:
    # Given the embedded database, where the job's transaction holds the write lock
    engine = make_engine(sqlite_url)
    settings = Settings(database_url=sqlite_url, broker_url=redis_url)
    Base.metadata.create_all(engine, tables=[Base.metadata.tables["effects_writes"]])
    start_worker.engine, start_worker.settings = engine, settings
    task_id = submit(engine, settings, WRITE, key="k")
    assert Relay(engine, publisher, settings).drain() == 1

    # When a worker runs a job that writes and logs in its transaction
    started = time.monotonic()
    start_worker()

    # Then the write and the completion are in, and the log line the job wrote while
    # it held the lock is written after, without waiting out SQLite's busy timeout
    assert finished(engine, task_id).status == "completed"
    assert writes(engine) == [("k", 1, 1)]
    assert wait_until(lambda: log_messages(engine, task_id), what="the log") == [
        "jobplane.job: writing k"
    ]
    assert time.monotonic() - started < SQLITE_BUSY_TIMEOUT_MS / 1000 / 2
    engine.dispose()
