"""Fixtures of the integration tests: a real Dramatiq worker over Redis, the relay's side."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import dramatiq
import pytest
from sqlalchemy import Engine

from jobplane.broker.factory import make_broker
from jobplane.settings import Settings
from jobplane.workers.broker import worker_broker


class Workers:
    """Starts Dramatiq workers (2 threads) running every job with the task lifecycle."""

    def __init__(self, engine: Engine, settings: Settings) -> None:
        self.engine = engine
        self.settings = settings
        self.started: list[tuple[dramatiq.Broker, dramatiq.Worker]] = []

    def __call__(self) -> dramatiq.Broker:
        broker = worker_broker(self.settings, lambda: self.engine)
        broker.emit_after("process_boot")  # what Dramatiq's CLI does in each worker process
        worker = dramatiq.Worker(broker, worker_threads=2, worker_timeout=100)
        worker.start()
        self.started.append((broker, worker))
        return broker

    def stop(self, broker: dramatiq.Broker) -> None:
        """Stop the worker of ``broker`` gracefully, as SIGTERM does."""
        for started, worker in list(self.started):
            if started is broker:
                worker.stop(timeout=10_000)
                broker.client.close()  # type: ignore[attr-defined]
                self.started.remove((started, worker))


@pytest.fixture
def publisher(redis_url: str) -> Iterator[dramatiq.Broker]:
    """The relay's side of the broker: a plain Redis broker that only enqueues."""
    broker = make_broker(redis_url)
    yield broker
    broker.client.close()  # type: ignore[attr-defined]


@pytest.fixture
def start_worker(pg_engine: Engine, pg_settings: Settings) -> Iterator[Workers]:
    """Start a Dramatiq worker (2 threads) running every job with the task lifecycle."""
    root = logging.getLogger()
    handlers = list(root.handlers)
    workers = Workers(pg_engine, pg_settings)
    yield workers
    for broker, _ in list(workers.started):
        workers.stop(broker)
    for handler in root.handlers[:]:
        if handler not in handlers:  # the task-log handler the process boot added
            root.removeHandler(handler)


@pytest.fixture
def lifecycle_log(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.INFO, logger="jobplane.workers.lifecycle")
    return caplog
