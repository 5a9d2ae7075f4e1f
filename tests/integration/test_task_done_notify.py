"""The NOTIFY of tasks becoming terminal: every finishing write sends it, nothing else does.

Waiters (``TaskHandle.wait``, ``GET /api/tasks/{id}?wait=``) rely on it being sent by
the database itself, whatever statement finished the task.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta

import psycopg
import pytest
from sqlalchemy import Engine, insert

from jobplane import service, store
from jobplane.db import make_engine
from jobplane.migrate import upgrade
from jobplane.models import TASK_DONE_CHANNEL, Task, utcnow
from jobplane.service import Submission
from jobplane.settings import Settings
from jobplane.store.rows import TaskRow

#: Sent last by a test: everything the statements before it notified arrives before it
#: (PostgreSQL delivers notifications in commit order).
SENTINEL = "sentinel"
#: PostgreSQL's limit on one payload, in bytes.
PAYLOAD_LIMIT = 8000


@pytest.fixture
def listener(pg_engine: Engine) -> Iterator[psycopg.Connection[tuple[object, ...]]]:
    dsn = pg_engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    conn = psycopg.connect(dsn, autocommit=True)
    conn.execute(f"LISTEN {TASK_DONE_CHANNEL}")
    yield conn
    conn.close()


def payloads_until_sentinel(
    engine: Engine, listener: psycopg.Connection[tuple[object, ...]]
) -> list[str]:
    """Every payload notified on the channel before a sentinel sent now."""
    with engine.connect() as conn:
        conn.exec_driver_sql(f"NOTIFY {TASK_DONE_CHANNEL}, '{SENTINEL}'")
        conn.commit()
    payloads = []
    for notify in listener.notifies(timeout=10):
        if notify.payload == SENTINEL:
            return payloads
        payloads.append(notify.payload)
    raise AssertionError(f"no sentinel within 10 s; got {payloads}")


def ids_of(payloads: list[str]) -> list[str]:
    return [task_id for payload in payloads for task_id in payload.split(",")]


def insert_tasks(engine: Engine, count: int, **values: object) -> list[TaskRow]:
    """``count`` tasks of demo.noop inserted as given (no outbox rows: no relay runs)."""
    now = utcnow()
    rows = [
        replace(service.build_task(Submission(type="demo.noop"), Settings(), now), **values)
        for _ in range(count)
    ]
    with engine.begin() as conn:
        conn.execute(insert(Task), [row.columns() for row in rows])
    return rows


def test_a_batch_completion_notifies_every_id_once_in_payloads_under_the_limit(
    pg_engine: Engine, listener: psycopg.Connection[tuple[object, ...]]
) -> None:
    # Given 450 running tasks
    tasks = insert_tasks(pg_engine, 450, status="running", attempts=1)

    # When one statement completes them all, as the worker's group commit does
    with pg_engine.begin() as conn:
        done = store.claims.complete_tasks(
            conn, [(task.id, task.dispatch, {"n": 1}) for task in tasks], utcnow()
        )
    assert all(done)

    # Then their ids were notified, each once, in a few payloads none over the limit
    payloads = payloads_until_sentinel(pg_engine, listener)
    assert sorted(ids_of(payloads)) == sorted(task.id for task in tasks)
    assert len(payloads) == 3
    assert max(len(payload.encode()) for payload in payloads) < PAYLOAD_LIMIT


def test_failing_cancelling_and_skipping_each_notify_the_task(
    pg_engine: Engine, listener: psycopg.Connection[tuple[object, ...]]
) -> None:
    # Given two running tasks and a pending one
    failing, stopping = insert_tasks(pg_engine, 2, status="running", attempts=1)
    (pending,) = insert_tasks(pg_engine, 1)
    now = utcnow()
    skipped = replace(
        service.build_task(Submission(type="demo.noop"), Settings(), now),
        status="skipped",
        error="missed (misfire=skip)",
        schedule_name="nightly",
        fire_time=now - timedelta(hours=1),
    )

    # When one fails, an admin cancels the pending one, the running one stops after a
    # cancel, and catch-up records a skipped run: each in a transaction of its own
    with pg_engine.begin() as conn:
        assert store.claims.fail_task(conn, failing.id, failing.dispatch, error="boom", now=now)
    with pg_engine.begin() as conn:
        store.tasks.cancel_task(conn, pending.id, now)
    with pg_engine.begin() as conn:
        assert store.tasks.mark_cancelled(conn, stopping.id, stopping.dispatch, now)
    with pg_engine.begin() as conn:
        assert store.schedules.insert_scheduled_run(conn, skipped, with_outbox=False)

    # Then each was notified, in commit order
    payloads = payloads_until_sentinel(pg_engine, listener)
    assert payloads == [failing.id, pending.id, stopping.id, skipped.id]


def test_writes_that_leave_tasks_unfinished_notify_nothing(
    pg_engine: Engine, listener: psycopg.Connection[tuple[object, ...]]
) -> None:
    # Given a finished task (inserted so: notified) and a submitted one (pending: not)
    now = utcnow()
    task = service.build_task(Submission(type="demo.noop"), Settings(), now)
    (finished,) = insert_tasks(pg_engine, 1, status="completed", completed_at=now)
    with pg_engine.begin() as conn:
        store.tasks.insert_tasks(conn, [task])
    assert payloads_until_sentinel(pg_engine, listener) == [finished.id]

    # When a worker claims it, beats, records progress, and its attempt is retried;
    # and the finished task gets an (unguarded) write that keeps its status
    with pg_engine.begin() as conn:
        claimed = store.claims.claim_task(conn, task.id, task.dispatch, worker="w", now=now)
        assert claimed is not None
        store.claims.beat(conn, [(task.id, claimed.dispatch)], now)
        store.claims.record_progress(conn, task.id, claimed.dispatch, 1, 2)
    with pg_engine.begin() as conn:
        assert store.claims.retry_task(
            conn, task.id, claimed.dispatch, error="again", run_after=now, now=now
        )
        conn.exec_driver_sql(
            "UPDATE jobplane_tasks SET progress = 1 WHERE id = %(id)s", {"id": finished.id}
        )

    # Then nothing was notified
    assert payloads_until_sentinel(pg_engine, listener) == []


def test_in_a_schema_of_its_own_completions_notify_too(pg_url: str) -> None:
    # Given jobplane in schema "jp" of a database, and a listener on it
    upgrade(pg_url, schema="jp")
    engine = make_engine(pg_url, schema="jp")
    dsn = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    listener = psycopg.connect(dsn, autocommit=True)
    listener.execute(f"LISTEN {TASK_DONE_CHANNEL}")
    try:
        (task,) = insert_tasks(engine, 1, status="running", attempts=1)

        # When its task completes
        with engine.begin() as conn:
            assert store.claims.complete_task(conn, task.id, task.dispatch, result=1, now=utcnow())

        # Then its id is notified
        assert payloads_until_sentinel(engine, listener) == [task.id]
    finally:
        listener.close()
        engine.dispose()
