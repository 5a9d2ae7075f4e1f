"""Retention clean-up (tasks, outbox rows, the runs ledger) and the scheduler standing in
for an absent relay."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta

import pytest
from periodiq import cron
from sqlalchemy import Engine, insert, select, text, update

from jobplane import catchup, service, store
from jobplane.models import Outbox, ScheduleRun, Task, TaskLog, utcnow
from jobplane.registry import load_jobs
from jobplane.schedules import Schedule
from jobplane.service import Submission
from jobplane.settings import Settings
from jobplane.workers import context
from jobplane.workers.jobs.maintenance import cleanup
from jobplane.workers.scheduler import Scheduler
from tests.conftest import row_counts

load_jobs(["tests.schedule_jobs"])  # the schedules' jobs must be registered to build tasks

HOUR = timedelta(hours=1)


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
def settings(any_url: str) -> Settings:
    return Settings(database_url=any_url)


@pytest.fixture
def job_context(any_engine: Engine) -> Iterator[None]:
    context.bind(context.JobContext("t", "maintenance.cleanup", {}, 1, 1, engine=any_engine))
    yield
    context.bind(None)


def assert_retry_stands(engine: Engine, retried: str, deleted: str) -> None:
    """The retried task is pending with its retry's outbox row; the other one is gone."""
    with engine.connect() as conn:
        assert store.tasks.get_task(conn, deleted) is None
        assert store.tasks.get_task(conn, retried).status == "pending"  # type: ignore[union-attr]
        dispatches = conn.execute(select(Outbox.dispatch).where(Outbox.task_id == retried))
        assert 2 in dispatches.scalars().all()  # the retry's dispatch


def ledger(engine: Engine) -> list[datetime]:
    """The fire times the runs ledger holds, oldest first."""
    with engine.connect() as conn:
        return list(
            conn.execute(select(ScheduleRun.fire_time).order_by(ScheduleRun.fire_time)).scalars()
        )


def test_retention_deletes_only_finished_tasks_older_than_the_retention(
    any_engine: Engine, settings: Settings, job_context: None
) -> None:
    old_completed = make_task(any_engine, settings, "completed", 10)
    old_failed = make_task(any_engine, settings, "failed", 8)
    keep = {
        make_task(any_engine, settings, "cancelled", 2),
        make_task(any_engine, settings, "completed", 6),
        make_task(any_engine, settings, "running", 10),  # never a running task
        make_task(any_engine, settings, "pending", 10),
    }

    assert cleanup(retention_days=7)["deletedTasks"] == 2

    with any_engine.connect() as conn:
        remaining = set(conn.execute(select(Task.id)).scalars())
        logged = set(conn.execute(select(TaskLog.task_id)).scalars())
        queued = set(conn.execute(select(Outbox.task_id)).scalars())
    assert remaining == keep
    assert old_completed not in logged | queued and old_failed not in logged | queued


def test_catch_up_after_retention_deleted_a_run_does_not_enqueue_it_again(
    any_engine: Engine, settings: Settings, job_context: None
) -> None:
    # Given an hourly schedule whose catch-up window (3 days) is longer than the
    # retention (1 day), first seen 30 hours ago
    hourly = Schedule.from_options(
        "sync_shioaji_futures", {"periodic": cron("0 * * * *"), "catch_up_window": 3 * 86400}
    )
    scheduler = Scheduler(any_engine, settings, [hourly])
    first_seen = utcnow().replace(minute=30, second=0, microsecond=0) - 30 * HOUR
    scheduler.tick(first_seen)
    # And its next run, enqueued then and completed 29 hours ago
    clock = first_seen + HOUR
    [run] = [d for d in scheduler.tick(clock) if d.outcome == catchup.ENQUEUE]
    with any_engine.begin() as conn:
        conn.execute(
            update(Task)
            .where(Task.id == run.task_id)
            .values(status="completed", completed_at=clock)
        )

    # When the retention clean-up deletes its task
    assert cleanup(retention_days=1)["deletedTasks"] == 1
    assert row_counts(any_engine)["tasks"] == 0

    # Then catch-up with the same clock finds the run recorded and enqueues nothing
    [again] = [d for d in scheduler.tick(clock) if d.fire_time == run.fire_time]
    assert (again.outcome, again.task_id) == (catchup.RECORDED, run.task_id)
    assert again.reason == "run recorded: its task was deleted"
    assert row_counts(any_engine) == {"tasks": 0, "outbox": 0, "task_logs": 0}


def test_retention_forgets_ledger_runs_only_outside_every_catch_up_window(
    any_engine: Engine, settings: Settings
) -> None:
    # Given ten days of hourly runs, recorded by a schedule with a 10-day window
    now = datetime.fromisoformat("2026-03-20T12:00:30+00:00")
    long_window = Schedule.from_options(
        "sync_shioaji_futures", {"periodic": cron("0 * * * *"), "catch_up_window": 10 * 86400}
    )
    scheduler = Scheduler(any_engine, settings, [long_window])
    scheduler.tick(now - timedelta(days=10))
    scheduler.tick(now)
    recorded = ledger(any_engine)
    assert len(recorded) == 240

    # When retention trims the ledger while the longest window of any schedule is 5 days
    five_days = Schedule.from_options(
        "sync_daily_prices", {"periodic": cron("0 * * * *"), "catch_up_window": 5 * 86400}
    )
    one_day = Schedule.from_options("weekly_report", {"periodic": cron("0 9 * * 0")})
    cutoff = catchup.ledger_cutoff([one_day, five_days], now)
    with any_engine.begin() as conn:
        forgotten = store.schedules.forget_runs_before(conn, cutoff, now)

    # Then it kept every run of the last 5 days plus the margin, and only those
    assert cutoff == now - timedelta(days=5) - catchup.LEDGER_MARGIN
    assert ledger(any_engine) == [fire for fire in recorded if fire >= cutoff]
    assert forgotten == len(recorded) - len(ledger(any_engine)) > 0
    # And a window made longer afterwards does not reach the forgotten runs either
    before = row_counts(any_engine)
    decisions = scheduler.tick(now)
    assert {d.outcome for d in decisions if d.fire_time and d.fire_time <= now} == {
        catchup.RECORDED
    }
    assert min(d.fire_time for d in decisions if d.fire_time) >= cutoff
    assert row_counts(any_engine) == before


def test_the_clean_up_keeps_the_new_outbox_row_of_a_task_retried_before_it_ran(
    any_engine: Engine, settings: Settings
) -> None:
    # Given a task that failed 10 days ago, retried by an admin just now
    retried = make_task(any_engine, settings, "failed", 10)
    gone = make_task(any_engine, settings, "completed", 10)
    with any_engine.begin() as conn:
        store.tasks.restart_task(conn, retried, utcnow())

    # When the clean-up runs with a cutoff that matched the task before its retry
    with any_engine.begin() as conn:
        deleted = store.retention.delete_finished_before(conn, utcnow() - timedelta(days=7), 500)

    # Then only the finished task went; the retried one keeps its row and outbox row
    assert deleted == 1
    assert_retry_stands(any_engine, retried, gone)


def test_the_clean_up_skips_a_task_whose_retry_is_being_committed(
    pg_engine: Engine, pg_settings: Settings
) -> None:
    # Given a task that failed 10 days ago, and an admin's retry of it not committed yet
    retried = make_task(pg_engine, pg_settings, "failed", 10)
    gone = make_task(pg_engine, pg_settings, "completed", 10)
    with pg_engine.connect() as admin:
        admin.begin()
        store.tasks.restart_task(admin, retried, utcnow())

        # When the clean-up runs meanwhile (it must neither delete nor wait for the task)
        with pg_engine.begin() as conn:
            conn.execute(text("SET LOCAL lock_timeout = '5s'"))
            deleted = store.retention.delete_finished_before(
                conn, utcnow() - timedelta(days=7), 500
            )
        admin.commit()

    # Then the retry stands, with its outbox row; the other finished task went
    assert deleted == 1
    assert_retry_stands(pg_engine, retried, gone)


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
        store.state.put_state(conn, store.state.RELAY_SEEN_KEY, utcnow().isoformat(), utcnow())
    scheduler = Scheduler(pg_engine, pg_settings, [])

    scheduler.tick()  # a relay swept just now: leave it to the relay
    with pg_engine.connect() as conn:
        assert store.tasks.get_task(conn, task_id).status == "running"  # type: ignore[union-attr]

    scheduler.tick(utcnow() + timedelta(minutes=5))  # no relay for five minutes
    with pg_engine.connect() as conn:
        recovered = store.tasks.get_task(conn, task_id)
    assert recovered is not None
    assert (recovered.status, recovered.retry_count) == ("pending", 1)
    assert recovered.error.startswith("worker lost")
