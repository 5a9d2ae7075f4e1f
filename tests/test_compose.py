"""compose.yaml stays a valid file whose services run real ``jobplane`` command lines."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import click
import pytest
import yaml  # installed with uvicorn[standard]

from jobplane.cli.main import cli
from jobplane.settings import Settings

COMPOSE_FILE = Path(__file__).resolve().parent.parent / "compose.yaml"
SERVICES = {"postgres", "redis", "migrate", "api", "relay", "worker"}
COMPOSE_TOKEN = "compose-test-token-0123"  #: strong enough for jobplane's settings


def load_compose() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(COMPOSE_FILE.read_text())
    return document


def jobplane_services(compose: dict[str, Any]) -> dict[str, list[str]]:
    """The services built from our Dockerfile, each with its command (the entrypoint's args)."""
    return {
        name: [str(arg) for arg in service["command"]]
        for name, service in compose["services"].items()
        if "build" in service
    }


def duration_seconds(text: str) -> float:
    """A compose duration (``90s``, ``1m30s``, ``2m``) in seconds."""
    units = {"h": 3600, "m": 60, "s": 1, "ms": 0.001}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", text)
    assert parts and "".join(n + u for n, u in parts) == text, f"not a duration: {text!r}"
    return sum(float(number) * units[unit] for number, unit in parts)


def docker_compose_available() -> str | None:
    """None if ``docker compose`` works here, else why not."""
    if shutil.which("docker") is None:
        return "the docker client is not installed"
    try:
        probe = subprocess.run(
            ["docker", "compose", "version"], capture_output=True, text=True, timeout=30
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"`docker compose version` could not run: {error}"
    if probe.returncode != 0:
        return "the docker client has no compose plugin (`docker compose version` failed)"
    return None


def test_compose_file_is_valid_for_docker_compose() -> None:
    # Given the docker client with its compose plugin
    missing = docker_compose_available()
    if missing:
        pytest.skip(missing)

    # When docker compose reads and validates the file, with a token given
    result = compose_config(JOBPLANE_API_TOKEN=COMPOSE_TOKEN)

    # Then it accepts it
    assert result.returncode == 0, result.stderr


def test_compose_refuses_to_run_without_a_token() -> None:
    # Given the docker client with its compose plugin
    missing = docker_compose_available()
    if missing:
        pytest.skip(missing)

    # When docker compose reads the file without JOBPLANE_API_TOKEN
    result = compose_config()

    # Then it stops, and says what to set (there is no public fallback token)
    assert result.returncode != 0
    assert "set JOBPLANE_API_TOKEN" in result.stderr


def compose_config(**variables: str) -> subprocess.CompletedProcess[str]:
    """``docker compose config -q`` on compose.yaml, with only ``variables`` of jobplane's."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOBPLANE_")}
    env.update(variables)
    return subprocess.run(
        ["docker", "compose", "-f", str(COMPOSE_FILE), "config", "-q"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=COMPOSE_FILE.parent,
        env=env,
    )


def test_compose_defines_the_platform_services() -> None:
    # Given compose.yaml
    compose = load_compose()

    # Then it has a service per process of the platform, plus its databases
    assert SERVICES <= set(compose["services"])
    assert set(jobplane_services(compose)) >= {"migrate", "api", "relay", "worker"}


def test_every_jobplane_command_in_compose_is_a_real_command_line() -> None:
    # Given the jobplane services of compose.yaml
    commands = jobplane_services(load_compose())

    for name, argv in commands.items():
        # When each command line is parsed by the jobplane CLI (without running it)
        sub_command = cli.commands.get(argv[0])

        # Then the sub-command exists and accepts those options
        assert sub_command is not None, f"{name}: `jobplane {argv[0]}` is not a sub-command"
        try:
            sub_command.make_context(f"jobplane {argv[0]}", argv[1:])
        except click.ClickException as error:
            pytest.fail(f"{name}: `jobplane {' '.join(argv)}` is refused: {error.format_message()}")


def test_jobplane_services_share_one_configuration() -> None:
    # Given the jobplane services of compose.yaml
    compose = load_compose()

    for name in jobplane_services(compose):
        environment = compose["services"][name]["environment"]

        # Then each talks to the compose PostgreSQL and Redis, with the shared token
        assert environment["JOBPLANE_DATABASE_URL"].startswith("postgresql+psycopg://"), name
        assert "@postgres/" in environment["JOBPLANE_DATABASE_URL"], name
        assert environment["JOBPLANE_BROKER_URL"] == "redis://redis:6379/0", name
        assert environment["JOBPLANE_API_TOKEN"].startswith("${JOBPLANE_API_TOKEN:?"), name


def test_processes_start_only_after_a_successful_migration() -> None:
    # Given the long-running jobplane services
    compose = load_compose()
    services = compose["services"]

    # Then the migration waits for PostgreSQL and the others wait for the migration
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    for name in ("api", "relay", "worker"):
        condition = services[name]["depends_on"]["migrate"]["condition"]
        assert condition == "service_completed_successfully", name


def test_workers_get_longer_to_stop_than_their_shutdown_grace() -> None:
    # Given the worker service and the default shutdown grace of a worker
    worker = load_compose()["services"]["worker"]
    grace = Settings.model_fields["shutdown_grace"].default

    # Then compose waits longer than that before it kills a stopping worker
    assert duration_seconds(worker["stop_grace_period"]) > grace
