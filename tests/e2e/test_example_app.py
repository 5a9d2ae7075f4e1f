"""The FastAPI example (examples/fastapi_app) on PostgreSQL and Redis, as a user runs it.

jobplane comes from the wheel, and every process starts in the example's directory with
the example's own ``app`` package: the app under uvicorn, jobplane's relay and worker.
The app's POST writes its report and enqueues its job in one transaction; the job finds
the report and writes its body in its completion's transaction. The app's Alembic history
and jobplane's keep a version table each, and neither one's autogenerate sees the
other's tables.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from alembic import command
from alembic.script import ScriptDirectory
from sqlalchemy import select, text

from jobplane.db import make_engine
from jobplane.migrate import alembic_config
from jobplane.models import Task
from tests.conftest import free_port, wait_until
from tests.e2e.install import INSTALL_TEST_TIMEOUT, REPO, run
from tests.e2e.platform import Platform, Process
from tests.e2e.test_beside_user_project import project_platform

pytestmark = [pytest.mark.slow, pytest.mark.timeout(INSTALL_TEST_TIMEOUT)]

EXAMPLE = REPO / "examples" / "fastapi_app"
#: The example's one revision, in its own alembic_version.
EXAMPLE_HEAD = "4b1e2a7c9d10"
TITLE = "Sales, November 2026"


def answers(http: httpx.Client, app: Process) -> bool:
    assert app.popen.poll() is None, app.log()
    try:
        return http.get("/openapi.json").status_code == 200
    except httpx.TransportError:
        return False


def test_the_example_app_enqueues_in_its_own_transaction_and_its_job_writes_the_report(
    plain_install: Path,
    empty_pg_url: str,
    redis_url: str,
    platform_factory: Callable[..., Platform],
) -> None:
    # Given the example's directory on PostgreSQL and Redis, jobplane installed from the wheel
    platform = project_platform(
        platform_factory, plain_install, EXAMPLE, empty_pg_url, redis_url, jobs="app.jobs"
    )
    bin_dir = plain_install / "bin"  # the app's alembic and uvicorn, installed with jobplane

    # When the app's history, then jobplane's, are migrated
    run(bin_dir / "alembic", "upgrade", "head", cwd=EXAMPLE, env=platform.env)
    platform.migrate()
    # and with jobplane's relay and worker running, the app, under uvicorn, gets a report
    platform.start_relay()
    worker = platform.start_worker(processes=1, threads=2)
    port = free_port()
    app = platform.start(
        "example", "app.main:app", "--port", str(port), command=[str(bin_dir / "uvicorn")]
    )
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
        wait_until(lambda: answers(http, app), timeout=30, what="the example app to answer")
        created = http.post("/reports", json={"title": TITLE})
        assert created.status_code == 201, created.text
        report = created.json()
        assert report["status"] == "queued" and report["task_id"], report

        # Then the app shows the report done, with the body its job wrote
        def done() -> dict[str, Any] | None:
            shown: dict[str, Any] = http.get(f"/reports/{report['id']}").json()
            return shown if shown["status"] == "done" else None

        shown = wait_until(done, timeout=20, what="the job to write the report")
    body = f"{TITLE}\n\nWritten by task {report['task_id']}, attempt 1."
    assert shown == {**report, "status": "done", "body": body}, worker.log()

    # And the database agrees: the one report, and its one task, completed with its result
    engine = make_engine(empty_pg_url)
    try:
        with engine.connect() as conn:
            reports = conn.execute(text("SELECT id, status, body, task_id FROM reports")).all()
            tasks = conn.execute(
                select(Task.id, Task.type, Task.status, Task.result, Task.attempts)
            ).all()
            app_version = conn.execute(text("SELECT version_num FROM alembic_version")).all()
            jobplane_version = conn.execute(
                text("SELECT version_num FROM jobplane_alembic_version")
            ).all()
    finally:
        engine.dispose()
    assert reports == [(report["id"], "done", body, report["task_id"])]
    result = {"report_id": report["id"], "words": len(body.split())}
    assert tasks == [(report["task_id"], "reports.generate", "completed", result, 1)]

    # And each history is at its own head, in its own table, and neither's autogenerate
    # finds anything to change in the other's tables
    jobplane_config = alembic_config(empty_pg_url)
    jobplane_head = ScriptDirectory.from_config(jobplane_config).get_current_head()
    assert (app_version, jobplane_version) == ([(EXAMPLE_HEAD,)], [(jobplane_head,)])
    run(bin_dir / "alembic", "check", cwd=EXAMPLE, env=platform.env)
    command.check(jobplane_config)
