"""jobplane as a user gets it: the wheel built from this checkout, in a fresh venv.

The fixtures over these (``plain_install``, one per test session) are in conftest.py.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
#: What the wheel is built from: the project's metadata and its packages.
SOURCES = ("pyproject.toml", "README.md", "app", "workers", "outbox", "migrations")
#: Seconds pip may take to build the wheel or to install it (from its cache, or PyPI).
PIP_TIMEOUT = 300
#: Variables that could lead the venv's Python back to the checkout or another environment.
HIDDEN = ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")
#: A test's timeout when it may build and install the wheel (the first of a session does).
INSTALL_TEST_TIMEOUT = 2 * PIP_TIMEOUT + 120


def clean_env() -> dict[str, str]:
    """This environment without jobplane's settings or anything that points into the repo."""
    return {
        k: v for k, v in os.environ.items() if not k.startswith("JOBPLANE_") and k not in HIDDEN
    }


def run(*args: str | Path, cwd: Path, env: dict[str, str] | None = None) -> str:
    """Run a command to completion; its output, or a failure that shows it."""
    done = subprocess.run(
        [str(arg) for arg in args],
        cwd=cwd,
        env=env or clean_env(),
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


def install(wheel: Path, workdir: Path) -> Path:
    """A fresh virtual environment in ``workdir`` with ``wheel`` installed, no extras."""
    venv = workdir / "venv"
    run(sys.executable, "-m", "venv", venv, cwd=workdir)
    constraints = REPO / "constraints.txt"
    run(
        venv / "bin" / "python",
        "-m",
        "pip",
        "install",
        "--constraint",
        constraints,
        wheel,
        cwd=workdir,
    )
    return venv
