"""``jobplane scheduler`` and ``jobplane relay`` processes as maintenance candidates: one
leads, whichever kinds are deployed; killed, another takes over."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from sqlalchemy import Engine, func, select, update

from jobplane import service, store
from jobplane.models import Task, utcnow
from jobplane.registry import load_jobs
from jobplane.service import Submission
from jobplane.settings import Settings
from tests.conftest import wait_until

LEADER = "is the leader: it runs maintenance"
SCHEDULER_LEADS = "this scheduler is the leader"


def test_a_standby_scheduler_takes_over_within_seconds_when_the_leader_dies(
    pg_url: str, redis_url: str, platform_factory: Callable[..., Any]
) -> None:
    platform = platform_factory(pg_url, redis_url, jobs="tests.schedule_jobs")
    first = platform.start("scheduler", "scheduler")
    wait_until(lambda: SCHEDULER_LEADS in first.log(), timeout=30, what="the first to lead")
    second = platform.start("scheduler", "scheduler")
    wait_until(lambda: "scheduler started" in second.log(), timeout=30, what="the second to start")
    assert LEADER not in second.log()

    first.kill()

    wait_until(lambda: SCHEDULER_LEADS in second.log(), timeout=10, what="the standby to lead")
    assert second.terminate() == 0


def lost_task(engine: Engine, settings: Settings) -> str:
    """A running task whose worker stopped beating an hour ago."""
    load_jobs()
    with engine.begin() as conn:
        row, _ = service.submit(conn, Submission(type="demo.noop"), settings, utcnow())
        conn.execute(
            update(Task)
            .where(Task.id == row["id"])
            .values(status="running", heartbeat_at=utcnow() - timedelta(hours=1))
        )
    return str(row["id"])


def test_a_scheduler_alone_recovers_a_dead_workers_task(
    pg_url: str,
    redis_url: str,
    pg_engine: Engine,
    pg_settings: Settings,
    platform_factory: Callable[..., Any],
) -> None:
    # Given a task whose worker died, and a platform with no relay: only a scheduler
    task_id = lost_task(pg_engine, pg_settings)
    platform = platform_factory(pg_url, redis_url)
    scheduler = platform.start("scheduler", "scheduler")

    # Then the scheduler leads maintenance, and recovers the task
    def status() -> str:
        with pg_engine.connect() as conn:
            task = store.tasks.get_task(conn, task_id)
        assert task is not None
        return str(task.status)

    wait_until(lambda: status() == "pending", timeout=30, what="the task's recovery")
    assert SCHEDULER_LEADS in scheduler.log()
    assert f"recovered task {task_id} from a lost worker" in scheduler.log()


def test_with_only_relays_deployed_schedules_still_fire(
    pg_url: str, redis_url: str, pg_engine: Engine, platform_factory: Callable[..., Any]
) -> None:
    # Given a schedule due every minute, first seen five minutes ago, and two relays
    # but no scheduler
    with pg_engine.begin() as conn:
        store.schedules.schedule_first_seen(
            conn, "every_minute", utcnow() - timedelta(minutes=5), record=True
        )
    platform = platform_factory(pg_url, redis_url, jobs="tests.minutely_jobs")
    relays = [platform.start_relay(), platform.start_relay()]

    # Then one relay leads maintenance, and records the schedule's runs
    def runs() -> int:
        with pg_engine.connect() as conn:
            count = (
                select(func.count()).select_from(Task).where(Task.schedule_name == "every_minute")
            )
            return int(conn.execute(count).scalar_one())

    wait_until(lambda: runs() >= 5, timeout=30, what="the missed runs to be recorded")
    assert [LEADER in relay.log() for relay in relays].count(True) == 1


def test_of_a_relay_and_a_scheduler_exactly_one_leads_maintenance(
    pg_url: str, redis_url: str, platform_factory: Callable[..., Any]
) -> None:
    # Given a relay and a scheduler, started together
    platform = platform_factory(pg_url, redis_url, jobs="tests.schedule_jobs")
    both = [platform.start_relay(), platform.start("scheduler", "scheduler")]

    # Then one of them leads, and the other stays a standby
    wait_until(lambda: any(LEADER in p.log() for p in both), timeout=30, what="a leader")
    time.sleep(2)  # a few standby polls
    assert [LEADER in p.log() for p in both].count(True) == 1
