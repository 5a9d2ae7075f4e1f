"""A plain ``pip install`` of jobplane's wheel, no extras, runs every process.

What the Dockerfile does: the test builds the wheel, installs it into a fresh virtual
environment with the pinned versions and nothing else, and runs the processes from
there, outside the checkout, until a job submitted over HTTP has completed.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import wait_until
from tests.e2e.install import HIDDEN, INSTALL_TEST_TIMEOUT, run
from tests.e2e.platform import Process
from tests.e2e.test_lifecycle import finished, submit

LEADER = "is the leader: it runs maintenance"

pytestmark = [pytest.mark.slow, pytest.mark.timeout(INSTALL_TEST_TIMEOUT)]


def wait_for_a_leader(relay: Process, scheduler: Process) -> None:
    """Until the relay or the scheduler leads maintenance, and the scheduler has started."""
    wait_until(
        lambda: any(LEADER in p.log() for p in (relay, scheduler)), timeout=30, what="a leader"
    )
    wait_until(lambda: "scheduler started" in scheduler.log(), timeout=30, what="the scheduler")


IMPORT_PROBE = """
import importlib.util, json
import jobplane, jobplane.outbox, jobplane.workers
print(json.dumps({
    "packages": [jobplane.__file__, jobplane.outbox.__file__, jobplane.workers.__file__],
    "shadowing": [n for n in ("app", "workers", "outbox", "migrations")
                  if importlib.util.find_spec(n)],
    "dev_extra": [n for n in ("pytest", "playwright") if importlib.util.find_spec(n)],
}))
"""


def test_the_wheel_installed_without_extras_runs_every_process_until_a_job_completes(
    plain_install: Path,
    empty_pg_url: str,
    redis_url: str,
    platform_factory: Callable[..., Any],
    tmp_path: Path,
) -> None:
    # Given the wheel alone in a fresh virtual environment, run from outside the checkout
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    probe = run(plain_install / "bin" / "python", "-c", IMPORT_PROBE, cwd=elsewhere)
    found = json.loads(probe)
    site_packages = next((plain_install / "lib").glob("python3*/site-packages"))
    assert all(Path(path).is_relative_to(site_packages) for path in found["packages"]), found
    assert found["dev_extra"] == []
    assert found["shadowing"] == [], "the wheel put more than jobplane into site-packages"

    platform = platform_factory(
        empty_pg_url, redis_url, command=[str(plain_install / "bin" / "jobplane")], cwd=elsewhere
    )
    for name in HIDDEN:
        platform.env.pop(name, None)

    # When every process starts from it: migrate, API, relay, worker and scheduler
    assert "database is up to date" in platform.migrate()
    relay, scheduler = platform.start_every_process()

    # Then a job submitted over HTTP completes, and the relay or the scheduler leads
    # maintenance
    client = platform.client()
    task_id = submit(client, "demo.echo", params={"plain": "install"})
    done = finished(client, task_id)
    assert (done["status"], done["result"]) == ("completed", {"plain": "install"}), done
    wait_for_a_leader(relay, scheduler)
    # And the API's documentation pages have their files, from the wheel's dependencies
    for asset in ("swagger-ui-bundle.js", "swagger-ui.css", "redoc.standalone.js"):
        assert client.get(f"/docs/assets/{asset}").status_code == 200, asset
