"""The race of the Celery era, from the application's own code: a job enqueued in the
transaction that writes its row always finds that row, and a rolled-back transaction
leaves nothing behind.

There, a handler wrote its row, committed, and dispatched; the worker sometimes ran
before the commit was visible. Here the task and its outbox row are part of the
application's own transaction: the relay cannot publish what is not committed.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, func, select, text
from sqlalchemy.orm import Session

import jobplane
from jobplane import registry
from jobplane.models import Outbox, Task
from tests import services
from tests.conftest import DEFAULT_MESSAGES, wait_until
from tests.e2e.platform import Platform
from tests.enqueue_jobs import USER_TABLE, read_row

TRANSACTIONS = 500
THREADS = 32


class Deployment:
    """A relay and a worker (running the enqueue test jobs) beside an application's engine."""

    def __init__(self, url: str, platform: Platform, engine: Engine) -> None:
        self.url = url
        self.platform = platform
        self.engine = engine
        self.worker = platform.start_worker(processes=1, threads=8)

    def tasks(self, ids: list[str]) -> dict[str, Any]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(Task).where(Task.id.in_(ids))).all()
        return {row.id: row for row in rows}

    def finished(self, ids: list[str], timeout: float = 60) -> dict[str, Any]:
        def all_done() -> dict[str, Any] | None:
            rows = self.tasks(ids)
            done = all(row.status in ("completed", "failed") for row in rows.values())
            return rows if len(rows) == len(ids) and done else None

        return dict(wait_until(all_done, timeout=timeout, what=f"{len(ids)} tasks to finish"))


@pytest.fixture(scope="module")
def deployment(
    pg_template: str, redis_server: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Deployment]:
    """One database, relay and worker for the module: the processes start once."""
    name = f"jobplane_e2e_enqueue_{os.getpid()}"
    services.admin_execute(f'CREATE DATABASE "{name}" TEMPLATE "{pg_template}"')
    url = services.pg_url(name)
    redis_client = services.redis_client()
    redis_client.flushdb()
    engine = create_engine(url, pool_size=THREADS)
    with engine.begin() as conn:
        conn.execute(text(f"CREATE TABLE {USER_TABLE} (id INTEGER PRIMARY KEY, note TEXT)"))
    platform = Platform(
        url,
        services.redis_url(),
        Path(tmp_path_factory.mktemp("enqueue")),
        jobs="tests.enqueue_jobs,tests.enqueue_remote_jobs",
        # Longer than any wait here: only the outbox NOTIFY at each commit wakes it.
        relay_poll_interval="300",
    )
    try:
        platform.start_relay()
        yield Deployment(url, platform, engine)
    finally:
        platform.close()
        engine.dispose()
        redis_client.flushdb()
        redis_client.close()
        services.admin_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_every_job_enqueued_in_a_users_transaction_finds_the_users_row(
    deployment: Deployment,
) -> None:
    # Given 500 concurrent application transactions, each writing its own row, enqueueing
    # a job that reads it, then taking a moment before its commit
    def handle_request(row_id: int) -> str:
        with Session(deployment.engine) as session, session.begin():
            session.execute(
                text(f"INSERT INTO {USER_TABLE} VALUES (:id, :note)"),
                {"id": row_id, "note": f"row {row_id}"},
            )
            task_id = read_row.enqueue(session, row_id=row_id)
            # The handler's remaining work: brief, and for one in five long enough that a
            # job published at enqueue time would certainly run before this commit.
            time.sleep(0.5 if row_id % 5 == 0 else random.uniform(0, 0.02))
        return task_id

    with ThreadPoolExecutor(THREADS) as pool:
        task_ids = list(pool.map(handle_request, range(TRANSACTIONS)))

    # Then every job completed on its first attempt with its own row's note
    rows = deployment.finished(task_ids)
    outcomes = [(rows[t].status, rows[t].result, rows[t].attempts) for t in task_ids]
    assert outcomes == [("completed", f"row {n}", 1) for n in range(TRANSACTIONS)]
    assert "is missing" not in deployment.worker.log()


def test_a_rolled_back_users_transaction_leaves_no_task_no_outbox_row_no_message(
    deployment: Deployment,
) -> None:
    # Given an application transaction that enqueues, then rolls back
    with Session(deployment.engine) as session:
        session.execute(text(f"INSERT INTO {USER_TABLE} VALUES (-1, 'rolled back')"))
        gone = read_row.enqueue(session, row_id=-1)
        session.rollback()
    # and a committed one after it, on the same queue
    with Session(deployment.engine) as session, session.begin():
        session.execute(text(f"INSERT INTO {USER_TABLE} VALUES (-2, 'committed')"))
        kept = read_row.enqueue(session, row_id=-2)

    # When the committed one has run
    assert deployment.finished([kept])[kept].status == "completed"

    # Then the rolled-back task has no row, no outbox row and no message, and never ran
    assert deployment.tasks([gone]) == {}
    with deployment.engine.connect() as conn:
        outbox = conn.execute(select(func.count()).where(Outbox.task_id == gone)).scalar()
    assert outbox == 0
    redis_client = services.redis_client()
    try:
        messages = b"".join(redis_client.hvals(DEFAULT_MESSAGES))
    finally:
        redis_client.close()
    assert gone.encode() not in messages
    assert gone not in deployment.worker.log()


def test_a_type_this_process_does_not_import_is_checked_by_the_worker_and_fails_at_once(
    deployment: Deployment,
) -> None:
    # Given a job only the worker imports, enqueued by name with fitting and unfitting params
    assert "tests.enqueue.remote_greet" not in registry.known_types()
    with Session(deployment.engine) as session, session.begin():
        fits = jobplane.enqueue(session, "tests.enqueue.remote_greet", {"name": "ana"})
        unfit = jobplane.enqueue(
            session, "tests.enqueue.remote_greet", {"nom": "ana"}, max_retries=5
        )

    # Then the first runs; the second fails on its first attempt, without a retry
    rows = deployment.finished([fits, unfit])
    assert (rows[fits].status, rows[fits].result) == ("completed", "hello ana")
    failed = rows[unfit]
    assert (failed.status, failed.attempts, failed.retry_count) == ("failed", 1, 0)
    assert "params do not fit job 'tests.enqueue.remote_greet'" in failed.error
    assert "missing a required argument: 'name'" in failed.error
