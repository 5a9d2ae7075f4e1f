"""What a token lets a client do: run the registered jobs, never maintenance, and the
demo jobs only where they were turned on.

Maintenance (retention, recovery, schedules) is no job: it runs in the elected leader
with its parameters from the settings, so no submission can ask it to delete more.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pydantic
import pytest
from sqlalchemy import Engine, select, update

from jobplane import service
from jobplane.db import make_engine
from jobplane.maintenance.cleaner import Cleaner
from jobplane.models import Task, utcnow
from jobplane.settings import Settings

#: What an older jobplane ran as jobs, and a client might still send.
MAINTENANCE = [
    {"type": "maintenance.cleanup", "params": {"retention_days": -1}},
    {"type": "maintenance.recover", "params": {}},
]


@pytest.fixture
def engine(any_url: str) -> Iterator[Engine]:
    engine = make_engine(any_url)
    yield engine
    engine.dispose()


def finished_task(engine: Engine, days_ago: float) -> str:
    then = utcnow() - timedelta(days=days_ago)
    with engine.begin() as conn:
        row, _ = service.submit(conn, service.Submission(type="demo.noop"), Settings(), then)
        finished = {"status": "completed", "completed_at": then}
        conn.execute(update(Task).where(Task.id == row.id).values(**finished))
    return row.id


@pytest.mark.parametrize("submission", MAINTENANCE, ids=lambda s: s["type"])
def test_maintenance_cannot_be_submitted_and_deletes_nothing(
    api_factory: Callable[..., httpx.Client],
    any_url: str,
    engine: Engine,
    submission: dict[str, object],
) -> None:
    # Given finished tasks inside the retention, and a client with the read-write token
    kept = {finished_task(engine, 1), finished_task(engine, 6)}
    token = "capabilities-test-token-0123"
    api = api_factory(Settings(database_url=any_url, api_token=token), token=token)

    # When it submits a maintenance job, alone or in a batch
    alone = api.post("/api/tasks", json=submission)
    batch = api.post("/api/tasks/batch", json={"tasks": [{"type": "demo.noop"}, submission]})

    # Then both are refused, none is offered as a job type, and nothing was deleted
    for response in (alone, batch):
        assert response.status_code == 422, response.text
        assert response.json()["error"] == "unknown_job_type"
        assert f"unknown job type {submission['type']!r}" in response.json()["message"]
    offered = [t["name"] for t in api.get("/api/admin/job-types").json()["jobTypes"]]
    assert offered and not [name for name in offered if name.startswith("maintenance")]
    Cleaner.from_settings(engine, Settings(database_url=any_url), []).clean()
    with engine.connect() as conn:
        assert set(conn.execute(select(Task.id)).scalars()) == kept


@pytest.mark.parametrize("days", [-1, 0])
def test_the_retention_comes_from_settings_that_refuse_to_delete_everything(days: int) -> None:
    with pytest.raises(pydantic.ValidationError, match="retention_days"):
        Settings(retention_days=days)


PROBE = """
import json
import jobplane.workers.boot as boot
from jobplane.api.main import create_app
from jobplane.registry import known_types
from jobplane.settings import Settings
create_app(Settings())
print(json.dumps({"types": known_types(), "actors": sorted(boot.broker.get_declared_actors())}))
"""


def registered_in_a_fresh_process(tmp_path: Path, **env: str) -> dict[str, list[str]]:
    """The job types and actors a worker process and an API register with ``env``."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("JOBPLANE_")}
    clean["JOBPLANE_DATABASE_URL"] = f"sqlite:///{tmp_path / 'unused.db'}"
    done = subprocess.run(
        [sys.executable, "-c", PROBE],
        env={**clean, **env},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    registered: dict[str, list[str]] = json.loads(done.stdout.splitlines()[-1])
    return registered


def test_production_processes_register_no_demo_and_no_maintenance_job(tmp_path: Path) -> None:
    production = registered_in_a_fresh_process(tmp_path)
    assert production == {"types": [], "actors": []}
    # the demo jobs are there only when asked for, as jobplane dev does
    dev = registered_in_a_fresh_process(tmp_path, JOBPLANE_DEMO_JOBS="1")
    assert dev["types"] == dev["actors"] and "demo.echo" in dev["types"]
    assert not [name for name in dev["types"] if not name.startswith("demo.")]
