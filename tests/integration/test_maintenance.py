"""Retention clean-up and the scheduler standing in for an absent relay."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import Engine, insert, select, update

from app import service, store
from app.models import Outbox, Task, TaskLog, utcnow
from app.service import Submission
from app.settings import Settings
from workers import context
from workers.jobs.maintenance import cleanup
from workers.scheduler import Scheduler


def make_task(engine: Engine, settings: Settings, status: str, age_days: float) -> str:
    """A task of ``status`` that was created and ended ``age_days`` ago, with a log line."""
    then = utcnow() - timedelta(days=age_days)
    with engine.begin() as conn:
        row, _ = service.submit(conn, Submission(type="demo.noop"), settings, then)
        ended = {"completed_at": then} if status in ("completed", "failed") else {}
        if status == "cancelled":
            ended = {"cancelled_at": then}
        if status == "running":
            ended = {"started_at": then, "heartbeat_at": utcnow()}
        conn.execute(update(Task).where(Task.id == row["id"]).values(status=status, **ended))
        conn.execute(
            insert(TaskLog).values(task_id=row["id"], level="INFO", message="x", created_at=then)
        )
    return str(row["id"])


@pytest.fixture
def job_context(pg_engine: Engine) -> Iterator[None]:
    context.bind(context.JobContext("t", "maintenance.cleanup", {}, 1, 1, engine=pg_engine))
    yield
    context.bind(None)


def test_retention_deletes_only_finished_tasks_older_than_the_retention(
    pg_engine: Engine, pg_settings: Settings, job_context: None
) -> None:
    old_completed = make_task(pg_engine, pg_settings, "completed", 10)
    old_failed = make_task(pg_engine, pg_settings, "failed", 8)
    keep = {
        make_task(pg_engine, pg_settings, "cancelled", 2),
        make_task(pg_engine, pg_settings, "completed", 6),
        make_task(pg_engine, pg_settings, "running", 10),  # never a running task
        make_task(pg_engine, pg_settings, "pending", 10),
    }

    assert cleanup(retention_days=7) == {"deletedTasks": 2}

    with pg_engine.connect() as conn:
        remaining = set(conn.execute(select(Task.id)).scalars())
        logged = set(conn.execute(select(TaskLog.task_id)).scalars())
        queued = set(conn.execute(select(Outbox.task_id)).scalars())
    assert remaining == keep
    assert old_completed not in logged | queued and old_failed not in logged | queued


def test_the_scheduler_recovers_dead_workers_tasks_only_while_no_relay_sweeps(
    pg_engine: Engine, pg_settings: Settings
) -> None:
    task_id = make_task(pg_engine, pg_settings, "running", 1)
    with pg_engine.begin() as conn:  # its worker stopped beating an hour ago
        conn.execute(
            update(Task)
            .where(Task.id == task_id)
            .values(heartbeat_at=utcnow() - timedelta(hours=1))
        )
        store.put_state(conn, store.RELAY_SEEN_KEY, utcnow().isoformat(), utcnow())
    scheduler = Scheduler(pg_engine, pg_settings, [])

    scheduler.tick()  # a relay swept just now: leave it to the relay
    with pg_engine.connect() as conn:
        assert store.get_task(conn, task_id).status == "running"  # type: ignore[union-attr]

    scheduler.tick(utcnow() + timedelta(minutes=5))  # no relay for five minutes
    with pg_engine.connect() as conn:
        recovered = store.get_task(conn, task_id)
    assert recovered is not None
    assert (recovered.status, recovered.retry_count) == ("pending", 1)
    assert recovered.error.startswith("worker lost")
