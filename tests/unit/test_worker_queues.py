"""Which queues a worker consumes: ``JOBPLANE_WORKER_QUEUES``, or ``--queues`` over it."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
from click.testing import CliRunner
from dramatiq import cli as dramatiq_cli

from jobplane.cli import processes
from jobplane.db import make_engine
from jobplane.settings import Settings, get_settings
from jobplane.workers.broker import worker_broker


@pytest.fixture
def dramatiq_args(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Any]]:
    """What ``jobplane worker`` hands Dramatiq's CLI (which is not run)."""
    calls: list[Any] = []
    monkeypatch.setattr(dramatiq_cli, "main", lambda args: calls.append(args) or 0)
    # The command sets these for its worker processes; put them back afterwards.
    monkeypatch.delenv("dramatiq_worker_timeout", raising=False)
    monkeypatch.delenv("JOBPLANE_WORKER_QUEUES", raising=False)
    get_settings.cache_clear()
    yield calls
    get_settings.cache_clear()


def run_worker(monkeypatch: pytest.MonkeyPatch, *args: str, queues: str | None = None) -> Any:
    if queues is not None:
        monkeypatch.setenv("JOBPLANE_WORKER_QUEUES", queues)
    result = CliRunner().invoke(processes.worker, ["-p", "1", *args])
    assert result.exit_code == 0, result.output
    return result


def test_a_worker_consumes_every_jobs_queue_by_default(
    dramatiq_args: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    run_worker(monkeypatch)
    assert dramatiq_args[0].queues is None  # Dramatiq's default: every declared queue


def test_the_worker_queues_setting_names_the_queues_it_consumes(
    dramatiq_args: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    run_worker(monkeypatch, queues="reports, mail")
    assert dramatiq_args[0].queues == ["reports", "mail"]


def test_the_queues_option_overrides_the_setting(
    dramatiq_args: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given JOBPLANE_WORKER_QUEUES=reports, when the worker is started with --queues mail
    run_worker(monkeypatch, "--queues", "mail", queues="reports")

    # Then it consumes mail only, and its worker processes read the same
    assert dramatiq_args[0].queues == ["mail"]
    assert os.environ["JOBPLANE_WORKER_QUEUES"] == "mail"
    # (Dramatiq forks them from this process: what they read must not be a stale cache.)
    assert get_settings().worker_queue_names == ["mail"]


def test_a_workers_broker_declares_the_queues_of_its_settings() -> None:
    settings = Settings(worker_queues="reports,mail")
    broker = worker_broker(settings, lambda: make_engine("sqlite://"))
    assert {"default", "reports", "mail"} <= broker.get_declared_queues()
