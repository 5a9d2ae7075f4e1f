"""The scheduler on PostgreSQL, with an injected clock: catch-up, dedupe; the elector."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from periodiq import cron
from sqlalchemy import Engine, func, select

from jobplane.db import make_engine
from jobplane.maintenance.catchup import Decision, catch_up
from jobplane.maintenance.leader import Elector, maintenance_lock
from jobplane.maintenance.scheduler import Scheduler
from jobplane.models import ScheduleRun, ScheduleState, Task
from jobplane.registry import load_jobs
from jobplane.schedules import Schedule
from jobplane.settings import Settings
from tests import services
from tests.conftest import row_counts, wait_until, waiting_on_a_lock

load_jobs(["tests.schedule_jobs"])  # the schedules' jobs must be registered to build tasks

T0 = datetime(2025, 12, 16, 10, 0, 30, tzinfo=UTC)


def hourly(misfire: str) -> Schedule:
    return Schedule.from_options(
        "sync_shioaji_futures", {"periodic": cron("0 * * * *"), "misfire": misfire}
    )


def runs(engine: Engine) -> list[tuple[datetime, str]]:
    with engine.connect() as conn:
        rows = conn.execute(
            select(Task.fire_time, Task.status)
            .where(Task.fire_time.is_not(None))
            .order_by(Task.fire_time)
        ).all()
    return [(row.fire_time, row.status) for row in rows]


@pytest.mark.parametrize(
    ("misfire", "enqueued", "skipped"),
    [("all", 3, 0), ("latest", 1, 2), ("skip", 0, 3)],
)
def test_runs_missed_while_the_scheduler_was_down_follow_the_policy_once(
    pg_engine: Engine, pg_settings: Settings, misfire: str, enqueued: int, skipped: int
) -> None:
    # Given a scheduler that first ran at 10:00:30, then was down for 11:00, 12:00, 13:00
    scheduler = Scheduler(pg_engine, pg_settings, [hourly(misfire)])
    scheduler.tick(T0)
    assert runs(pg_engine) == []

    # When it starts again at 13:30
    scheduler.tick(T0 + timedelta(hours=3, minutes=29, seconds=30))

    # Then the policy decided each missed run, and every decision is a row
    statuses = [status for _, status in runs(pg_engine)]
    assert statuses.count("pending") == enqueued
    assert statuses.count("skipped") == skipped
    assert [fire.hour for fire, _ in runs(pg_engine)] == [11, 12, 13]
    assert row_counts(pg_engine)["outbox"] == enqueued
    # And a second start enqueues nothing more
    before = row_counts(pg_engine)
    scheduler.tick(T0 + timedelta(hours=3, minutes=31))
    assert row_counts(pg_engine) == before


def test_two_schedulers_at_once_record_each_fire_time_exactly_once(
    pg_url: str, pg_settings: Settings
) -> None:
    every_minute = Schedule.from_options("sync_shioaji_futures", {"periodic": cron("* * * * *")})
    engines = [make_engine(pg_url) for _ in range(2)]
    schedulers = [Scheduler(engine, pg_settings, [every_minute]) for engine in engines]
    try:
        for scheduler in schedulers:
            scheduler.tick(T0)
        for minute in range(1, 11):
            now = T0 + timedelta(minutes=minute)
            barrier = threading.Barrier(2)

            def tick(
                scheduler: Scheduler, at: datetime = now, gate: threading.Barrier = barrier
            ) -> None:
                gate.wait()
                scheduler.tick(at)

            threads = [threading.Thread(target=tick, args=(s,)) for s in schedulers]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
        fires = [fire for fire, _ in runs(engines[0])]
        assert len(fires) == 10
        assert len(set(fires)) == 10
    finally:
        for engine in engines:
            engine.dispose()


def test_both_passes_of_a_repeated_hour_are_recorded_as_separate_runs(
    pg_engine: Engine, pg_settings: Settings
) -> None:
    # Given every 15 minutes in Berlin, first seen at 01:50 CEST on the autumn night
    every_15 = Schedule.from_options(
        "sync_shioaji_futures", {"periodic": cron("*/15 * * * *"), "timezone": "Europe/Berlin"}
    )
    scheduler = Scheduler(pg_engine, pg_settings, [every_15])
    scheduler.tick(datetime(2026, 10, 24, 23, 50, tzinfo=UTC))

    # When the scheduler ticks at 03:00:30 CET, after the clock went back at 03:00 CEST
    scheduler.tick(datetime(2026, 10, 25, 2, 0, 30, tzinfo=UTC))

    # Then 02:00 to 02:45 are runs twice, once per pass, 15 real minutes apart
    fires = [fire for fire, _ in runs(pg_engine)]
    assert len(fires) == len(set(fires)) == 9
    assert {later - earlier for earlier, later in zip(fires, fires[1:], strict=False)} == {
        timedelta(minutes=15)
    }
    berlin = ZoneInfo("Europe/Berlin")
    assert sum(fire.astimezone(berlin).hour == 2 for fire in fires) == 8


def test_two_schedulers_inserting_the_same_run_at_once_make_one_task(any_url: str) -> None:
    # Given two schedulers, each with its own engine, that saw the schedule at 10:00:30
    settings = Settings(database_url=any_url)
    engines = [make_engine(any_url) for _ in range(2)]
    first, second = (Scheduler(engine, settings, [hourly("all")]) for engine in engines)
    first.tick(T0)
    eleven = T0 + timedelta(minutes=59, seconds=40)
    try:
        # When the first records the 11:00 run but has not committed yet
        with engines[0].connect() as conn:
            conn.begin()
            mine = catch_up(conn, first.schedules, settings, eleven)
            # And the second records the same run meanwhile
            theirs: list[list[Decision]] = []
            racer = threading.Thread(target=lambda: theirs.append(second.tick(eleven)))
            racer.start()
            if any_url.startswith("postgresql"):  # it read nothing recorded, then waits
                wait_until(lambda: waiting_on_a_lock(engines[0]), what="the second insert")
            conn.commit()
        racer.join(timeout=60)

        # Then the run is one task with one outbox row, and one ledger row
        fire = eleven.replace(second=0)
        assert [d.outcome for d in mine if d.fire_time == fire] == ["enqueued"]
        assert [d.outcome for d in theirs[0] if d.fire_time == fire] == ["already_recorded"]
        assert [(fire.hour, status) for fire, status in runs(engines[0])] == [(11, "pending")]
        assert row_counts(engines[0])["outbox"] == 1
        with engines[0].connect() as conn:
            assert conn.execute(select(func.count()).select_from(ScheduleRun)).scalar_one() == 1
    finally:
        for engine in engines:
            engine.dispose()


def test_a_dry_run_writes_nothing(pg_engine: Engine, pg_settings: Settings) -> None:
    scheduler = Scheduler(pg_engine, pg_settings, [hourly("all")])
    scheduler.tick(T0)
    before = row_counts(pg_engine)
    with pg_engine.begin() as conn:
        decisions = catch_up(
            conn,
            scheduler.schedules,
            pg_settings,
            T0 + timedelta(hours=3, minutes=30),
            dry_run=True,
        )
        unseen = catch_up(
            conn,
            [Schedule.from_options("sync_daily_prices", {"periodic": cron("0 * * * *")})],
            pg_settings,
            T0,
            dry_run=True,
        )
    assert [d.outcome for d in decisions if d.fire_time and d.fire_time < T0 + timedelta(hours=4)][
        :3
    ] == ["would_enqueue"] * 3
    assert unseen is not None
    assert row_counts(pg_engine) == before
    with pg_engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(ScheduleState)).scalar_one() == 1


@pytest.fixture
def two_engines(pg_url: str) -> Iterator[tuple[Engine, Engine]]:
    engines = (make_engine(pg_url), make_engine(pg_url))
    yield engines
    for engine in engines:
        engine.dispose()


def test_one_candidate_leads_and_another_takes_over_when_it_dies(
    two_engines: tuple[Engine, Engine],
) -> None:
    first, second = (Elector(engine, role="scheduler") for engine in two_engines)
    assert first.acquire() is True
    assert second.acquire() is False
    assert first.acquire() is True  # still the leader

    # When the leader's session ends (the process died), the standby takes over
    assert first._conn is not None
    first._conn.invalidate()  # the server side closes the session, as on a crash
    first._conn = None
    # The server releases the lock as the session's backend exits, a moment later.
    wait_until(second.acquire, timeout=10, what="the standby to take the lock")
    second.release()


def test_a_leader_whose_session_ends_steps_down_and_the_standby_takes_over(
    two_engines: tuple[Engine, Engine],
) -> None:
    first, second = (Elector(engine, role="scheduler") for engine in two_engines)
    assert first.acquire() is True
    assert first._conn is not None
    pid = first._conn.execute(select(func.pg_backend_pid())).scalar()
    first._conn.commit()
    # When the server ends the leader's session (as keepalives do for a lost client)
    services.admin_execute(f"SELECT pg_terminate_backend({int(pid)})")  # type: ignore[arg-type]
    # Then the standby takes over, and the old leader, checking its lock, steps down
    wait_until(second.acquire, timeout=10, what="the standby to take the lock")
    assert first.acquire() is False
    assert not first.leading
    second.release()
    first.release()


def test_installations_in_two_schemas_of_one_database_each_have_a_leader(
    two_engines: tuple[Engine, Engine],
) -> None:
    # Given two installations sharing a database, in schemas "billing" and "reports"
    billing, reports = (
        Elector(engine, role="scheduler", key=maintenance_lock(schema))
        for engine, schema in zip(two_engines, ("billing", "reports"), strict=True)
    )
    default = Elector(two_engines[0], role="scheduler", key=maintenance_lock(None))
    try:
        # Then each leads its own, and one in the default schema too
        assert billing.acquire() is True
        assert reports.acquire() is True
        assert default.acquire() is True
        # But a second candidate of the same installation stands by
        standby = Elector(two_engines[1], role="scheduler", key=maintenance_lock("billing"))
        assert standby.acquire() is False
    finally:
        for elector in (billing, reports, default):
            elector.release()
