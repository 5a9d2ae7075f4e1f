"""Retention clean-up (tasks, outbox rows, the runs ledger), and maintenance led by
whichever candidate holds the lock: a scheduler alone recovers lost workers' tasks."""

from __future__ import annotations

from datetime import datetime, timedelta

import dramatiq
import pytest
from dramatiq.brokers.stub import StubBroker
from periodiq import cron
from sqlalchemy import Engine, insert, select, text, update

from jobplane import service, store
from jobplane.db import make_engine
from jobplane.maintenance import catchup
from jobplane.maintenance.cleaner import Cleaner
from jobplane.maintenance.runner import Maintenance, maintenance_for
from jobplane.maintenance.scheduler import Scheduler
from jobplane.models import Outbox, ScheduleRun, Task, TaskLog, utcnow
from jobplane.registry import load_jobs
from jobplane.schedules import Schedule
from jobplane.service import Submission
from jobplane.settings import Settings
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
    any_engine: Engine, settings: Settings
) -> None:
    old_completed = make_task(any_engine, settings, "completed", 10)
    old_failed = make_task(any_engine, settings, "failed", 8)
    keep = {
        make_task(any_engine, settings, "cancelled", 2),
        make_task(any_engine, settings, "completed", 6),
        make_task(any_engine, settings, "running", 10),  # never a running task
        make_task(any_engine, settings, "pending", 10),
    }

    assert Cleaner(any_engine, [], retention_days=7).clean().deleted_tasks == 2

    with any_engine.connect() as conn:
        remaining = set(conn.execute(select(Task.id)).scalars())
        logged = set(conn.execute(select(TaskLog.task_id)).scalars())
        queued = set(conn.execute(select(Outbox.task_id)).scalars())
    assert remaining == keep
    assert old_completed not in logged | queued and old_failed not in logged | queued


def test_catch_up_after_retention_deleted_a_run_does_not_enqueue_it_again(
    any_engine: Engine, settings: Settings
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
    assert Cleaner(any_engine, [hourly], retention_days=1).clean().deleted_tasks == 1
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


def lost_task(engine: Engine, settings: Settings) -> str:
    """A running task whose worker stopped beating an hour ago."""
    task_id = make_task(engine, settings, "running", 1)
    with engine.begin() as conn:
        conn.execute(
            update(Task)
            .where(Task.id == task_id)
            .values(heartbeat_at=utcnow() - timedelta(hours=1))
        )
    return task_id


def candidate(engine: Engine, settings: Settings, role: str) -> Maintenance:
    broker: dramatiq.Broker = StubBroker()
    return maintenance_for(engine, broker, settings, [], role=role)


def assert_recovered_once(engine: Engine, task_id: str) -> None:
    with engine.connect() as conn:
        recovered = store.tasks.get_task(conn, task_id)
    assert recovered is not None
    assert (recovered.status, recovered.retry_count) == ("pending", 1)
    assert recovered.error.startswith("worker lost")


def test_a_scheduler_alone_recovers_dead_workers_tasks_as_the_leader(
    pg_engine: Engine, pg_settings: Settings
) -> None:
    # Given a task whose worker died, and no relay: only a scheduler's candidate
    task_id = lost_task(pg_engine, pg_settings)
    scheduler = candidate(pg_engine, pg_settings, "scheduler")

    # When it takes its first step
    try:
        scheduler.step()

        # Then it leads, and it recovered the task
        assert scheduler.elector.leading
        assert_recovered_once(pg_engine, task_id)
    finally:
        scheduler.elector.release()


def test_of_a_relay_and_a_scheduler_exactly_one_leads_maintenance(
    pg_url: str, pg_settings: Settings
) -> None:
    # Given a relay's candidate and a scheduler's, each on an engine of its own
    engines = [make_engine(pg_url) for _ in range(2)]
    task_id = lost_task(engines[0], pg_settings)
    relay, scheduler = (
        candidate(engine, pg_settings, role)
        for engine, role in zip(engines, ("relay", "scheduler"), strict=True)
    )
    try:
        # When both step, in turn, several times
        for _ in range(3):
            relay.step()
            scheduler.step()

        # Then exactly one of them leads (the first to try), and the task was
        # recovered once
        assert (relay.elector.leading, scheduler.elector.leading) == (True, False)
        assert_recovered_once(engines[0], task_id)

        # And when the leader goes, the other takes over
        relay.elector.release()
        scheduler.step()
        assert scheduler.elector.leading
    finally:
        for one in (relay, scheduler):
            one.elector.release()
        for engine in engines:
            engine.dispose()
