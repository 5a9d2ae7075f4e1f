"""Two ``jobplane scheduler`` processes: one leads; killed, the other takes over."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tests.conftest import wait_until

LEADER = "this scheduler is the leader"


def test_a_standby_scheduler_takes_over_within_seconds_when_the_leader_dies(
    pg_url: str, redis_url: str, platform_factory: Callable[..., Any]
) -> None:
    platform = platform_factory(pg_url, redis_url, jobs="tests.schedule_jobs")
    first = platform.start("scheduler", "scheduler")
    wait_until(lambda: LEADER in first.log(), timeout=30, what="the first scheduler to lead")
    second = platform.start("scheduler", "scheduler")
    wait_until(lambda: "scheduler started" in second.log(), timeout=30, what="the second to start")
    assert LEADER not in second.log()

    first.kill()

    wait_until(lambda: LEADER in second.log(), timeout=10, what="the standby to take over")
    assert second.terminate() == 0
