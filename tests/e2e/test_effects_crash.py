"""A worker killed with SIGKILL after its job's writes, before their commit: the writes
are not in, and the recovered task's next attempt makes them once."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from jobplane.registry import load_jobs
from jobplane.settings import Settings
from tests.conftest import wait_until
from tests.effects_jobs import Base, reached
from tests.integration.test_effects import WRITE, finished, submit, writes


def test_a_worker_killed_before_the_commit_leaves_no_write_and_the_retry_writes_once(
    pg_url: str,
    redis_url: str,
    pg_engine: Engine,
    pg_settings: Settings,
    platform_factory: Callable[..., Any],
    tmp_path: Path,
) -> None:
    # Given a relay (the maintenance leader) and a worker running the tests' jobs
    load_jobs(["tests.effects_jobs"])
    Base.metadata.create_all(pg_engine)
    platform = platform_factory(pg_url, redis_url, jobs="tests.effects_jobs")
    platform.start_relay()
    worker = platform.start_worker(processes=1, threads=2)

    # And a job that wrote in its transaction, its block ended, its body not returned
    gates = str(tmp_path)
    task_id = submit(pg_engine, pg_settings, WRITE, key="k", gates=gates, hold_at="after")
    wait_until(reached(gates, "after", 1).exists, timeout=30, what="the write to be flushed")

    # When the worker dies with SIGKILL
    worker.kill()

    # Then the write is not in; and once the task is recovered, a new worker's attempt
    # writes it once
    assert writes(pg_engine) == []
    platform.start_worker(processes=1, threads=2)
    done = finished(pg_engine, task_id)
    assert (done.status, done.attempts, done.retry_count) == ("completed", 2, 1)
    assert writes(pg_engine) == [("k", 2, 2)]
