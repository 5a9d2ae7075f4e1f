"""A plain ``pip install`` of jobplane's wheel, no extras, runs every process.

What the Dockerfile does: the test builds the wheel, installs it into a fresh virtual
environment with the pinned versions and nothing else, and runs the processes from
there, outside the checkout, until a job submitted over HTTP has completed.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests import services
from tests.conftest import wait_until
from tests.e2e.test_lifecycle import finished, submit

REPO = Path(__file__).resolve().parents[2]
#: What the wheel is built from: the project's metadata and its packages.
SOURCES = ("pyproject.toml", "README.md", "app", "workers", "outbox", "migrations")
#: Seconds pip may take to build the wheel or to install it (from its cache, or PyPI).
PIP_TIMEOUT = 300
LEADER = "is the leader: it runs maintenance"
#: Variables that could lead the venv's Python back to the checkout or another environment.
HIDDEN = ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")

pytestmark = [pytest.mark.slow, pytest.mark.timeout(2 * PIP_TIMEOUT + 120)]


def clean_env() -> dict[str, str]:
    """This environment without jobplane's settings or anything that points into the repo."""
    return {
        k: v for k, v in os.environ.items() if not k.startswith("JOBPLANE_") and k not in HIDDEN
    }


def run(*args: str | Path, cwd: Path) -> str:
    """Run a command to completion; its output, or a failure that shows it."""
    done = subprocess.run(
        [str(arg) for arg in args],
        cwd=cwd,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=PIP_TIMEOUT,
        check=False,
    )
    assert done.returncode == 0, f"{args} exited {done.returncode}:\n{done.stdout}{done.stderr}"
    return done.stdout


def build_wheel(workdir: Path) -> Path:
    # From a copy, so that setuptools' build/ and *.egg-info stay out of the checkout.
    source = workdir / "source"
    source.mkdir()
    for name in SOURCES:
        if (REPO / name).is_dir():
            shutil.copytree(
                REPO / name, source / name, ignore=shutil.ignore_patterns("__pycache__")
            )
        else:
            shutil.copy2(REPO / name, source / name)
    dist = workdir / "dist"
    run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--wheel-dir", dist, source, cwd=workdir)
    [wheel] = dist.glob("jobplane-*.whl")
    return wheel


@pytest.fixture
def plain_install(tmp_path: Path) -> Path:
    """A fresh virtual environment with the wheel installed without extras."""
    wheel = build_wheel(tmp_path)
    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", venv, cwd=tmp_path)
    constraints = REPO / "constraints.txt"
    run(
        venv / "bin" / "python",
        "-m",
        "pip",
        "install",
        "--constraint",
        constraints,
        wheel,
        cwd=tmp_path,
    )
    return venv


@pytest.fixture
def empty_pg_url(postgres: None) -> Iterator[str]:
    """A PostgreSQL database of this test's own with no schema: migrate has all to do."""
    name = f"jobplane_plain_{os.getpid()}"
    services.admin_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    services.admin_execute(f'CREATE DATABASE "{name}"')
    yield services.pg_url(name)
    services.admin_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


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
    migrate = platform.start("migrate", "migrate")
    assert migrate.popen.wait(timeout=120) == 0, migrate.log()
    assert "database is up to date" in migrate.log()
    platform.start_api()
    relay = platform.start_relay()
    platform.start_worker(processes=1, threads=2)
    scheduler = platform.start("scheduler", "scheduler")

    # Then a job submitted over HTTP completes, and the relay or the scheduler leads
    # maintenance
    client = platform.client()
    task_id = submit(client, "demo.echo", params={"plain": "install"})
    done = finished(client, task_id)
    assert (done["status"], done["result"]) == ("completed", {"plain": "install"}), done
    wait_until(
        lambda: any(LEADER in p.log() for p in (relay, scheduler)), timeout=30, what="a leader"
    )
    wait_until(lambda: "scheduler started" in scheduler.log(), timeout=30, what="the scheduler")
