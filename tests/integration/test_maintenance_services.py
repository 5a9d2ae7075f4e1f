"""Each maintenance service's pass with a fake clock, on SQLite: when the next pass is
due, and the guards that keep a pass from doing harm."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from dramatiq.brokers.stub import StubBroker
from periodiq import cron
from sqlalchemy import Engine, update

from jobplane import store
from jobplane.maintenance.cleaner import Cleaned, Cleaner
from jobplane.maintenance.rescuer import Rescuer
from jobplane.maintenance.scheduler import FIRE_MARGIN, Scheduler
from jobplane.models import Task, utcnow
from jobplane.registry import load_jobs
from jobplane.schedules import Schedule
from jobplane.settings import Settings
from tests.conftest import row_counts
from tests.integration.test_maintenance import make_task

load_jobs(["tests.schedule_jobs"])

T0 = datetime(2025, 12, 16, 10, 0, 30, tzinfo=UTC)


class Clock:
    """A wall clock that moves only when told."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


class Ticks:
    """A monotonic timer that moves one second at each reading."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        self.now += 1.0
        return self.now


@pytest.fixture
def settings(sqlite_url: str) -> Settings:
    return Settings(database_url=sqlite_url)


def test_the_cleaner_deletes_within_its_budget_and_comes_back_at_once_until_done(
    sqlite_engine: Engine, settings: Settings
) -> None:
    # Given five finished tasks past the retention, and a cleaner of two per batch whose
    # budget allows one batch per pass
    for _ in range(5):
        make_task(sqlite_engine, settings, "completed", 10)
    cleaner = Cleaner(sqlite_engine, [], batch_size=2, pass_budget=1.5, timer=Ticks())

    # When it runs pass after pass, then each pass is due at once until none is left
    waits = [cleaner.run_once() for _ in range(3)]
    assert waits == [0.0, 0.0, cleaner.interval]
    assert row_counts(sqlite_engine)["tasks"] == 0
    # And with nothing left to delete, a pass is one batch, then the interval
    assert cleaner.run_once() == cleaner.interval
    assert cleaner.clean() == Cleaned(deleted_tasks=0, forgotten_runs=0)


def test_the_scheduler_records_a_due_run_and_waits_until_the_next_fire_time(
    sqlite_engine: Engine, settings: Settings
) -> None:
    # Given an hourly schedule first seen at 10:00:30
    clock = Clock(T0)
    hourly = Schedule.from_options("sync_shioaji_futures", {"periodic": cron("0 * * * *")})
    scheduler = Scheduler(sqlite_engine, settings, [hourly], clock=clock)
    assert scheduler.run_once() == scheduler.max_sleep + FIRE_MARGIN  # 11:00 is far

    # When its pass runs just after 11:00
    clock.now = T0.replace(hour=11, second=0) + timedelta(seconds=FIRE_MARGIN)
    wait = scheduler.run_once()

    # Then the run is recorded, and the next pass waits (at most max_sleep)
    assert row_counts(sqlite_engine)["tasks"] == 1
    assert wait == scheduler.max_sleep + FIRE_MARGIN
    clock.now = T0.replace(hour=11, minute=59, second=50)
    assert scheduler.run_once() == pytest.approx(10 + FIRE_MARGIN)


def test_after_an_outage_the_rescuer_waits_a_heartbeat_timeout_to_recover_lost_workers(
    sqlite_engine: Engine, settings: Settings
) -> None:
    # Given a task whose worker stopped beating, and a rescuer that saw an outage
    clock = Clock(utcnow())
    task_id = make_task(sqlite_engine, settings, "running", 1)
    with sqlite_engine.begin() as conn:
        conn.execute(
            update(Task)
            .where(Task.id == task_id)
            .values(heartbeat_at=clock.now - timedelta(minutes=5))
        )
    rescuer = Rescuer(sqlite_engine, StubBroker(), heartbeat_timeout=60, clock=clock)
    rescuer.note_outage()

    def status() -> str:
        with sqlite_engine.connect() as conn:
            return str(store.tasks.get_task(conn, task_id).status)  # type: ignore[union-attr]

    # When the database is reachable again, the task stays running for a heartbeat
    # timeout (live workers beat again first)
    rescuer.note_reachable()
    clock.now += timedelta(seconds=59)
    assert rescuer.run_once() == rescuer.interval
    assert status() == "running"

    # Then after it, the task is recovered
    clock.now += timedelta(seconds=2)
    rescuer.run_once()
    assert status() == "pending"
    assert rescuer.counts["recovered_from_lost_worker"] == 1
