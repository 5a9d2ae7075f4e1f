"""``jobplane api`` and ``dev`` never serve the network without a token by accident."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.conftest import free_port, wait_until

ROOT = Path(__file__).resolve().parents[2]


def environment(**variables: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOBPLANE_")}
    return {**env, "PYTHONPATH": str(ROOT), **variables}


def jobplane(*args: str, **variables: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "jobplane.cli", *args],
        env=environment(**variables),
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.0.2.10", "jobs.example.com"])
def test_serving_beyond_loopback_without_a_token_is_refused(host: str, tmp_path: Path) -> None:
    # Given no JOBPLANE_API_TOKEN (`jobplane dev` makes one up, so it is never open unless
    # told with the same --insecure-no-auth)
    database = f"sqlite:///{tmp_path / 'j.db'}"

    # When the API is to be served on an address beyond loopback
    refused = jobplane(
        "api", "--host", host, "--port", str(free_port()), JOBPLANE_DATABASE_URL=database
    )

    # Then it does not start, and says why and what to do, without a traceback
    assert refused.returncode == 2
    assert "refusing to serve the API" in refused.stderr
    assert "JOBPLANE_API_TOKEN" in refused.stderr and "--insecure-no-auth" in refused.stderr
    assert "Traceback" not in refused.stderr


@pytest.mark.parametrize("token", ["change-me", "short"])
def test_a_weak_token_stops_every_process_with_a_clear_error(token: str) -> None:
    for command in (["api"], ["relay"], ["tasks", "ls"]):
        refused = jobplane(*command, JOBPLANE_API_TOKEN=token)
        assert refused.returncode == 2, command
        assert refused.stderr.startswith("error: JOBPLANE_API_TOKEN: "), refused.stderr
        assert "openssl rand -hex 32" in refused.stderr
        assert "Traceback" not in refused.stderr


def test_insecure_no_auth_serves_beyond_loopback_and_says_so_loudly(tmp_path: Path) -> None:
    # Given `jobplane api` on all addresses, no token, and the explicit flag
    port = free_port()
    log = tmp_path / "api.log"
    with log.open("wb") as out:
        api = subprocess.Popen(
            [sys.executable, "-m", "jobplane.cli", "api", "--host", "0.0.0.0", "--port", str(port)]
            + ["--insecure-no-auth"],
            env=environment(JOBPLANE_DATABASE_URL=f"sqlite:///{tmp_path / 'j.db'}"),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        # Then it serves (asked over loopback only)
        def up() -> bool:
            assert api.poll() is None, log.read_text()
            try:
                return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(up, timeout=30, what="jobplane api to serve")
        # And its log says, as a warning, that it has no token
        warning = next(line for line in log.read_text().splitlines() if "INSECURE" in line)
        assert "WARNING" in warning and "NO TOKEN" in warning and f"0.0.0.0:{port}" in warning
    finally:
        api.send_signal(signal.SIGINT)
        api.wait(timeout=30)
