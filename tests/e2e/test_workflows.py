"""Workflows on real processes: a relay, workers, PostgreSQL and Redis, killed and flushed.

The workflow's state is in the database only: its steps are task rows, and the next
step's outbox row commits with the completion of the one before it. So neither a
worker's SIGKILL nor a Redis flush can lose a workflow halfway or start a step twice.
"""

from __future__ import annotations

import importlib
import random
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import redis
from sqlalchemy import Engine, func, select

from jobplane import store
from jobplane.library import workflows
from jobplane.library.workflow_handles import WorkflowHandle
from jobplane.library.workflows import chain, group
from jobplane.models import Task, utcnow
from jobplane.registry import load_jobs
from jobplane.settings import Settings
from jobplane.store.rows import TaskRow
from tests.conftest import wait_until

JOBS = "tests.workflow_jobs"
Submit = Callable[[workflows.Node], WorkflowHandle]
#: Times the group of a thousand loses its workers (each costs a heartbeat timeout).
KILLS = 2


@pytest.fixture
def jobs() -> ModuleType:
    """The tests' job module, imported (and so registered) only by the tests that use it:
    imported at collection it would grow every submission's schema in the document
    that tests/api/test_openapi.py fuzzes first."""
    return importlib.import_module(JOBS)


@pytest.fixture
def platform(
    pg_url: str,
    redis_url: str,
    pg_engine: Engine,
    platform_factory: Callable[..., Any],
    jobs: ModuleType,
) -> Any:
    """A platform (no process started yet) that runs the tests' jobs, their tables made."""
    load_jobs([JOBS])
    jobs.Base.metadata.create_all(pg_engine)
    return platform_factory(pg_url, redis_url, jobs=JOBS)


@pytest.fixture
def submit(pg_engine: Engine, pg_settings: Settings) -> Submit:
    """Submit a workflow as application code does, in a transaction of its own."""

    def submit(node: workflows.Node) -> WorkflowHandle:
        with pg_engine.begin() as conn:
            submitted = workflows.submit(conn, node, pg_settings, utcnow())
        return WorkflowHandle(submitted.workflow_id, engine=pg_engine)

    return submit


def finished(handle: WorkflowHandle, timeout: float = 60) -> str:
    """The workflow's status once it is not running any more."""
    return wait_until(
        lambda: (status := handle.refresh().status) != "running" and status,
        timeout=timeout,
        what=f"workflow {handle.id} to end",
    )


def wait_for_status(engine: Engine, task_id: str, status: str, what: str) -> None:
    wait_until(lambda: store_task(engine, task_id).status == status, timeout=30, what=what)


def test_a_chain_survives_a_killed_worker_and_a_flushed_redis_each_step_running_once(
    redis_client: redis.Redis,
    pg_engine: Engine,
    platform: Any,
    submit: Submit,
    jobs: ModuleType,
) -> None:
    # Given a chain of three steps passing their results, its first step running
    relay = platform.start_relay()
    worker = platform.start_worker(processes=1, threads=2)
    handle = submit(
        chain(
            jobs.add.s(n=1, seconds=1.0),
            jobs.add.s(n=2).set(pipe_result=True),
            jobs.add.s(n=3).set(pipe_result=True),
        ),
    )
    first, second, third = (step.id for step in handle.steps())
    wait_for_status(pg_engine, first, "running", what="step 1 to start")
    # (The relay goes first, so that step 2, published by step 1's completion, waits in
    # the outbox for the platform to come back rather than reach the doomed worker.)
    relay.kill()
    wait_for_status(pg_engine, first, "completed", what="step 1 to complete")

    # When the worker is killed with SIGKILL and Redis loses everything
    worker.kill()
    redis_client.flushdb()

    # Then, on a platform started again, steps 2 and 3 run once each, with the results
    platform.start_relay()
    platform.start_worker(processes=1, threads=2)
    assert finished(handle) == "completed"
    done = {step.id: step for step in handle.steps()}
    assert [done[t].attempts for t in (first, second, third)] == [1, 1, 1]
    assert [done[t].result for t in (first, second, third)] == [1, 3, 6]
    assert handle.wait(timeout=5) == 6


def test_a_group_of_twenty_then_runs_once_after_all_with_their_results_in_order(
    pg_engine: Engine,
    platform: Any,
    submit: Submit,
    jobs: ModuleType,
) -> None:
    platform.start_relay()
    platform.start_worker(processes=2, threads=4)
    members = [jobs.square.s(n=n, seconds=random.random() / 10) for n in range(20)]
    handle = submit(group(members).then(jobs.collect.s().set(pipe_result=True)))

    assert handle.wait(timeout=60) == [n * n for n in range(20)]
    *squares, then = handle.steps()
    assert then.attempts == 1
    assert then.started_at is not None
    assert all(m.completed_at is not None and m.completed_at <= then.started_at for m in squares)
    assert callback_runs(pg_engine, jobs) == [20]


def test_a_group_of_a_thousand_under_random_kills_calls_back_exactly_once(
    pg_engine: Engine,
    platform: Any,
    submit: Submit,
    jobs: ModuleType,
) -> None:
    # Given a group of 1,000 with a step after it, and workers
    platform.start_relay()
    worker = platform.start_worker(processes=2, threads=4)
    members = [jobs.square.s(n=n) for n in range(1000)]
    handle = submit(group(members).then(jobs.collect.s().set(pipe_result=True)))
    chance = random.Random(1000)

    # When workers are killed with SIGKILL at random moments while the members run
    kills = 0
    while kills < KILLS and completed_members(pg_engine, handle) < 900:
        target = min(900, completed_members(pg_engine, handle) + chance.randint(50, 300))
        wait_until(
            lambda target=target: completed_members(pg_engine, handle) >= target,
            timeout=60,
            what="members to complete between kills",
        )
        worker.kill()
        kills += 1
        worker = platform.start_worker(processes=2, threads=4)

    # Then the workflow completes (it never hangs), and the step after the group ran its
    # body to completion exactly once, with the thousand results in order
    assert kills >= 1
    assert handle.wait(timeout=120) == [n * n for n in range(1000)]
    assert callback_runs(pg_engine, jobs) == [1000]
    with pg_engine.connect() as conn:
        total = conn.execute(
            select(func.count()).where(Task.workflow_id == handle.id, Task.status == "completed")
        ).scalar_one()
    assert total == 1001


def test_a_failing_middle_step_fails_the_workflow_and_its_retry_completes_it(
    platform: Any,
    submit: Submit,
    tmp_path: Path,
    jobs: ModuleType,
) -> None:
    platform.start_relay()
    platform.start_worker(processes=1, threads=2)
    blocker = tmp_path / "fail-while-here"
    blocker.touch()
    handle = submit(
        chain(jobs.add.s(n=1), jobs.unless_file.s(path=str(blocker)), jobs.add.s(n=3)),
    )

    # The middle step fails (it has no retries): the workflow fails, the last never starts
    assert finished(handle) == "failed"
    first, middle, last = handle.steps()
    assert (first.status, middle.status, last.status) == ("completed", "failed", "cancelled")
    assert last.attempts == 0 and last.started_at is None
    assert "exists" in (handle.error or "")

    # When the cause is gone and the workflow is retried, it completes from the failed step
    blocker.unlink()
    handle.retry()
    assert handle.wait(timeout=60) == 3
    first, middle, last = handle.steps()
    assert (first.attempts, middle.attempts, last.attempts) == (1, 2, 1)


def test_a_worker_for_one_queue_never_runs_another_queues_steps(
    pg_engine: Engine,
    platform: Any,
    submit: Submit,
    jobs: ModuleType,
) -> None:
    # Given a worker for the email queue only, and a group of email and quant steps
    platform.start_relay()
    platform.start(
        "worker-email", "worker", "--processes", "1", "--threads", "2", "--queues", "email"
    )
    handle = submit(
        group(
            jobs.email.s(to="a@example.com"),
            jobs.quant.s(symbol="TXF"),
            jobs.email.s(to="b@example.com"),
        ),
    )
    mail_one, pricing, mail_two = (step.id for step in handle.steps())

    # Then the email steps complete and the quant one is not taken
    for mail in (mail_one, mail_two):
        wait_for_status(pg_engine, mail, "completed", what="the email steps")
    assert (store_task(pg_engine, pricing).status, store_task(pg_engine, pricing).attempts) == (
        "pending",
        0,
    )

    # And a worker for quant runs it
    platform.start(
        "worker-quant", "worker", "--processes", "1", "--threads", "1", "--queues", "quant"
    )
    assert handle.wait(timeout=30) == [
        "sent to a@example.com",
        "priced TXF",
        "sent to b@example.com",
    ]
    workers = {store_task(pg_engine, t).worker for t in (mail_one, pricing)}
    assert len(workers) == 2


def store_task(engine: Engine, task_id: str) -> TaskRow:
    with engine.connect() as conn:
        row = store.tasks.get_task(conn, task_id)
    assert row is not None
    return row


def completed_members(engine: Engine, handle: WorkflowHandle) -> int:
    with engine.connect() as conn:
        return conn.execute(
            select(func.count()).where(
                Task.workflow_id == handle.id, Task.status == "completed", Task.type == "wf.square"
            )
        ).scalar_one()


def callback_runs(engine: Engine, jobs: ModuleType) -> list[int]:
    with engine.connect() as conn:
        return list(conn.execute(select(jobs.CallbackRun.members)).scalars())
