"""How soon a job sees its cancellation: ``JOBPLANE_CANCEL_CHECK_INTERVAL`` is honoured."""

from __future__ import annotations

import dramatiq
import pytest
from sqlalchemy import Engine

from jobplane import service, store
from jobplane.models import utcnow
from jobplane.registry import load_jobs
from jobplane.settings import Settings
from jobplane.workers.context import JobContext
from tests.conftest import wait_until
from tests.integration.conftest import Workers
from tests.integration.test_claim import publish_message, submit, task


@pytest.fixture(autouse=True)
def _jobs() -> None:
    load_jobs(["tests.outcome_jobs"])


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def running_task(engine: Engine) -> tuple[str, int]:
    """A task claimed by a worker (id, dispatch)."""
    with engine.begin() as conn:
        row, _ = service.submit(conn, service.Submission(type="demo.sleep"), Settings(), utcnow())
        claimed = store.claims.claim_task(conn, row.id, row.dispatch, worker="w:1", now=utcnow())
    assert claimed is not None
    return row.id, row.dispatch


def context(
    engine: Engine, run: tuple[str, int], settings: Settings, clock: FakeClock
) -> JobContext:
    task_id, dispatch = run
    return JobContext(
        task_id, "demo.sleep", {}, 1, dispatch, engine=engine, settings=settings, clock=clock
    )


def test_a_short_cancel_check_interval_makes_a_cancellation_seen_sooner(
    any_engine: Engine,
) -> None:
    # Given a running task, watched by a job with the default interval (0.5 s) and by
    # one with a short interval, each having looked once: not cancelled
    clock = FakeClock()
    run = running_task(any_engine)
    default = context(any_engine, run, Settings(), clock)
    short = context(any_engine, run, Settings(cancel_check_interval=0.05), clock)
    assert not default.cancelled
    assert not short.cancelled

    # When an admin cancels it and 0.1 s pass
    with any_engine.begin() as conn:
        store.tasks.cancel_task(conn, run[0], utcnow())
    clock.now += 0.1

    # Then the short interval's job sees it; the default's only once 0.5 s have passed
    assert short.cancelled
    assert not default.cancelled
    clock.now += 0.4
    assert default.cancelled


def test_a_job_reads_the_cancel_check_interval_of_its_workers_settings(
    pg_engine: Engine,
    pg_settings: Settings,
    publisher: dramatiq.Broker,
    start_worker: Workers,
) -> None:
    # Given a worker whose settings check for cancellations every 50 ms
    start_worker.settings = pg_settings.model_copy(update={"cancel_check_interval": 0.05})
    start_worker()

    # When a job reports the interval its context uses
    task_id = submit(pg_engine, pg_settings, job="test.cancel_check_interval")
    publish_message(publisher, task_id, job="test.cancel_check_interval")

    # Then it is the worker's
    done = wait_until(
        lambda: (row := task(pg_engine, task_id)).status == "completed" and row,
        what="the job to complete",
    )
    assert done.result == {"interval": 0.05}
