"""A worker while the database or Redis fails: nothing is run without a claim, nothing
acked before its outcome, no outcome lost.

The database outage is real: the test's own database refuses connections and loses the
ones it had, exactly what a PostgreSQL restart does to a client (the shared server
stays up for the other tests).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from typing import Any

import dramatiq
import pytest
import redis
from sqlalchemy import Engine, update

from jobplane import store
from jobplane.broker import ack_sender, redis_dispatch
from jobplane.broker import state as broker_state
from jobplane.models import Task, utcnow
from jobplane.registry import load_jobs
from jobplane.settings import Settings
from jobplane.workers.monitor import TaskMonitor
from tests.conftest import wait_until
from tests.integration.conftest import Workers
from tests.integration.test_claim import publish_message, submit, task
from tests.services import DatabaseOutage


@pytest.fixture(autouse=True)
def _jobs() -> None:
    load_jobs(["tests.outcome_jobs"])


@pytest.fixture
def outage(pg_url: str) -> Iterator[DatabaseOutage]:
    database = DatabaseOutage(pg_url)
    yield database
    database.end()  # whatever the test did


@pytest.fixture
def retry_log(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.WARNING, logger="jobplane.outages")
    return caplog


def retrying(caplog: pytest.LogCaptureFixture, what: str) -> bool:
    """Whether a write named ``what`` said it waits for the database to come back."""
    return any(
        what in record.getMessage() and "database unavailable" in record.getMessage()
        for record in caplog.records
    )


def wait_until_acked(publisher: dramatiq.Broker, what: str) -> None:
    """Wait until Redis holds no message of queue "default": every one was acked."""
    wait_until(lambda: not broker_state.queue_holds_messages(publisher, "default"), what=what)


def test_a_claim_that_fails_during_an_outage_runs_the_body_exactly_once_after_it(
    pg_engine: Engine,
    pg_settings: Settings,
    publisher: dramatiq.Broker,
    start_worker: Workers,
    outage: DatabaseOutage,
    retry_log: pytest.LogCaptureFixture,
) -> None:
    # Given a worker, and a task whose message arrives while the database is down
    task_id = submit(pg_engine, pg_settings, "demo.echo", n=1)
    start_worker()
    outage.begin()
    publish_message(publisher, task_id, job="demo.echo")
    wait_until(lambda: retrying(retry_log, "claims"), what="the claim to meet the outage")

    # When the database comes back
    outage.end()

    # Then the task runs once and completes; its message is acked
    wait_until(lambda: task(pg_engine, task_id).status == "completed", what="completion")
    done = task(pg_engine, task_id)
    assert (done.attempts, done.result) == (1, {"n": 1})
    wait_until_acked(publisher, "the message to be acked")


def test_a_claim_given_up_at_shutdown_leaves_its_message_on_the_broker(
    pg_engine: Engine,
    pg_settings: Settings,
    publisher: dramatiq.Broker,
    start_worker: Workers,
    outage: DatabaseOutage,
    retry_log: pytest.LogCaptureFixture,
) -> None:
    # Given a worker whose claim waits out an outage
    task_id = submit(pg_engine, pg_settings, "demo.echo", n=2)
    worker = start_worker()
    outage.begin()
    publish_message(publisher, task_id, job="demo.echo")
    wait_until(lambda: retrying(retry_log, "claims"), what="the claim to meet the outage")

    # When the worker is stopped before the database comes back
    start_worker.stop(worker)
    outage.end()

    # Then the body never ran, and the message is still on the broker
    untouched = task(pg_engine, task_id)
    assert (untouched.status, untouched.attempts) == ("pending", 0)
    assert broker_state.queue_holds_messages(publisher, "default")

    # And a new worker runs it once
    start_worker()
    wait_until(lambda: task(pg_engine, task_id).status == "completed", what="completion")
    assert task(pg_engine, task_id).attempts == 1


def test_a_completion_that_meets_an_outage_is_written_once_the_database_is_back(
    pg_engine: Engine,
    pg_settings: Settings,
    publisher: dramatiq.Broker,
    start_worker: Workers,
    outage: DatabaseOutage,
    retry_log: pytest.LogCaptureFixture,
) -> None:
    # Given a job running when the database goes down
    task_id = submit(pg_engine, pg_settings, "demo.sleep", seconds=0.5)
    start_worker()
    publish_message(publisher, task_id, job="demo.sleep")
    wait_until(lambda: task(pg_engine, task_id).status == "running", what="the job to start")
    outage.begin()

    # When its body ends during the outage, and the database comes back
    wait_until(lambda: retrying(retry_log, "completions"), what="the completion to meet it")
    outage.end()

    # Then the task is completed by that one attempt, with its result
    wait_until(lambda: task(pg_engine, task_id).status == "completed", what="completion")
    done = task(pg_engine, task_id)
    assert (done.attempts, done.result) == (1, {"slept": 0.5, "steps": 1})
    wait_until_acked(publisher, "the message to be acked after the commit")


@pytest.mark.parametrize("kind", ["nan", "infinity", "nul", "surrogate", "deep"])
def test_a_result_the_database_cannot_store_fails_the_task_once_saying_why(
    pg_engine: Engine,
    pg_settings: Settings,
    publisher: dramatiq.Broker,
    start_worker: Workers,
    kind: str,
) -> None:
    task_id = submit(pg_engine, pg_settings, "test.unstorable", kind=kind)
    start_worker()
    publish_message(publisher, task_id, job="test.unstorable")

    wait_until(lambda: task(pg_engine, task_id).status == "failed", what="the failure")
    failed = task(pg_engine, task_id)
    assert failed.attempts == 1
    assert "result cannot be stored" in failed.error
    if kind == "deep":
        assert "result.rows" + "[0]" * 31 + ": nested deeper than 32 levels" in failed.error


def test_the_ack_thread_keeps_acking_after_redis_refuses_writes(
    pg_engine: Engine,
    pg_settings: Settings,
    publisher: dramatiq.Broker,
    start_worker: Workers,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given Redis that answers the next ack batch with READONLY (a failover's replica)
    refusals = iter([redis.ReadOnlyError("You can't write against a read only replica.")])
    real_execute = redis_dispatch.execute

    def execute(broker: Any, fill: Any, **options: Any) -> list[Any]:
        if threading.current_thread().name == "jobplane-acks":  # not the relay's publishes
            error = next(refusals, None)
            if error is not None:
                raise error
        return real_execute(broker, fill, **options)

    monkeypatch.setattr(ack_sender.redis_dispatch, "execute", execute)
    start_worker()

    # When two jobs run, one after the other
    for n in range(2):
        task_id = submit(pg_engine, pg_settings, "demo.echo", n=n)
        publish_message(publisher, task_id, job="demo.echo")
        wait_until(lambda: task(pg_engine, task_id).status == "completed", what="completion")  # noqa: B023

    # Then both messages are acked: the refusal did not stop the ack thread
    wait_until_acked(publisher, "both messages to be acked")
    assert next(refusals, None) is None


def test_a_stale_runs_release_keeps_the_live_runs_heartbeat(
    pg_engine: Engine, pg_settings: Settings
) -> None:
    # Given a task running here twice: a stale run (dispatch 1) and the live one (dispatch 2)
    task_id = submit(pg_engine, pg_settings)
    start = utcnow()
    with pg_engine.begin() as conn:
        store.claims.claim_task(conn, task_id, 1, worker="w:1", now=start)
        conn.execute(update(Task).where(Task.id == task_id).values(dispatch=2, heartbeat_at=None))
    monitor = TaskMonitor(
        pg_engine, worker_name="w:1", heartbeat_interval=0.05, cancel_interval=0.02
    )
    monitor.hold((task_id, 1))
    monitor.hold((task_id, 2))

    # When the stale run ends
    monitor.release((task_id, 1))
    monitor.start()
    try:
        # Then the live run's heartbeat goes on
        wait_until(lambda: task(pg_engine, task_id).heartbeat_at is not None, what="a beat")
    finally:
        monitor.stop()
    assert monitor.held() == [(task_id, 2)]
