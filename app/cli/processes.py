"""Commands that run a jobplane process; each imports what it starts only when run."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

import click

from jobplane.settings import get_settings

if TYPE_CHECKING:
    import dramatiq
    from sqlalchemy import Engine

    from jobplane.maintenance.runner import Maintenance

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
#: Longest idle back-off of a worker's Redis consumer, in ms (Dramatiq's default: 1,000).
IDLE_POLL_MS = 100


def _logging() -> None:
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)


@click.command()
def migrate() -> None:
    """Bring the database schema up to date (alembic upgrade head)."""
    from jobplane.migrate import upgrade

    _logging()
    settings = get_settings()
    upgrade(settings.database_url, schema=settings.db_schema, settings=settings)
    click.echo("database is up to date")


INSECURE_NO_AUTH = click.option(
    "--insecure-no-auth",
    "insecure",
    is_flag=True,
    help="serve beyond loopback without JOBPLANE_API_TOKEN: anyone who can reach it may"
    " run, cancel and retry jobs",
)


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@INSECURE_NO_AUTH
def api(host: str, port: int, insecure: bool) -> None:
    """Serve the HTTP API with uvicorn."""
    import uvicorn

    from jobplane.api.main import create_app
    from jobplane.cli.exposure import serving_settings

    _logging()
    settings = serving_settings(get_settings(), host, port, insecure=insecure)
    # Open dashboard event streams must not hold a stop up for their full length.
    uvicorn.run(
        create_app(settings),
        host=host,
        port=port,
        log_level="info",
        access_log=False,
        timeout_graceful_shutdown=3,
    )


@click.command()
@click.option(
    "--maintenance/--no-maintenance",
    default=True,
    help="also be a candidate for the maintenance leader (default: yes)",
)
@click.option("--no-sweeper", "no_sweeper", is_flag=True, hidden=True, help="--no-maintenance")
def relay(maintenance: bool, no_sweeper: bool) -> None:
    """Publish committed outbox rows to the broker (and lead maintenance when elected)."""
    from jobplane.broker.factory import make_broker
    from jobplane.db import engine_from_settings
    from jobplane.outbox.relay import Relay
    from jobplane.timeouts import RedisTimeouts

    _logging()
    log = logging.getLogger("jobplane")
    if no_sweeper:
        log.warning("--no-sweeper is deprecated: it means --no-maintenance now")
        maintenance = False
    settings = get_settings()
    engine = engine_from_settings(settings)
    broker = make_broker(settings.broker_url, timeouts=RedisTimeouts.from_settings(settings))
    the_relay = Relay(engine, broker, settings)
    candidate = _maintenance(engine, broker, role="relay") if maintenance else None
    log.info("relay started (broker %s)", _redact(settings.broker_url))
    _serve(the_relay.run, the_relay.stop, beside=candidate)


@click.command()
@click.option("--processes", "-p", default=os.cpu_count() or 1, show_default=True, type=int)
@click.option("--threads", "-t", default=8, show_default=True, type=int)
@click.option(
    "--queues",
    "-Q",
    default=None,
    help="comma-separated queues (default: JOBPLANE_WORKER_QUEUES, else every job's)",
)
def worker(processes: int, threads: int, queues: str | None) -> None:
    """Run Dramatiq worker processes for every registered job."""
    from dramatiq import cli as dramatiq_cli

    from jobplane.registry import load_jobs

    settings = get_settings()
    if queues is not None:
        settings = settings.model_copy(update={"worker_queues": queues})
    # Fail here, with one clear line, rather than in every worker process.
    load_jobs(settings.job_modules, demo_jobs=settings.demo_jobs)
    queue_list = settings.worker_queue_names
    # Dramatiq's Redis consumer, finding its queue empty, backs off up to this many ms
    # (its default: 1,000), which is how late the first job after a quiet spell starts.
    os.environ.setdefault("dramatiq_worker_timeout", str(IDLE_POLL_MS))
    # Every worker process reads its settings from the environment (jobplane.workers.boot):
    # the queues given here must reach them. Dramatiq forks those processes from this one,
    # so they would inherit the settings cached above, read before this line.
    os.environ["JOBPLANE_WORKER_QUEUES"] = ",".join(queue_list)
    get_settings.cache_clear()
    grace_ms = int(settings.shutdown_grace * 1000)
    argv = ["jobplane.workers.boot", "--processes", str(processes), "--threads", str(threads)]
    # On SIGTERM, running jobs get this long to finish; the lifecycle middleware then
    # puts the rest back to pending without counting their attempt.
    argv += ["--worker-shutdown-timeout", str(max(grace_ms, 1))]
    if queue_list:
        argv += ["--queues", *queue_list]
    sys.exit(dramatiq_cli.main(dramatiq_cli.make_argument_parser().parse_args(argv)))


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--threads", default=4, show_default=True, type=int, help="worker threads")
@INSECURE_NO_AUTH
def dev(host: str, port: int, threads: int, insecure: bool) -> None:
    """Run everything in one process: API, relay, workers, scheduler (SQLite, in-memory broker).

    Without JOBPLANE_API_TOKEN it makes one up and prints it, unless --insecure-no-auth.
    """
    from jobplane.cli.dev import run_dev

    _logging()
    run_dev(get_settings(), host=host, port=port, threads=threads, insecure=insecure)


def _redact(url: str) -> str:
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url.split("@")[-1]


@click.command()
def scheduler() -> None:
    """Be a candidate for the maintenance leader: schedules with catch-up, recovery of
    lost work, retention."""
    from jobplane.broker.factory import make_broker
    from jobplane.db import engine_from_settings
    from jobplane.timeouts import RedisTimeouts

    _logging()
    settings = get_settings()
    engine = engine_from_settings(settings)
    broker = make_broker(settings.broker_url, timeouts=RedisTimeouts.from_settings(settings))
    candidate = _maintenance(engine, broker, role="scheduler")
    _serve(candidate.run, candidate.stop)


def _serve(
    run: Callable[[], None], stop: Callable[[], None], *, beside: Maintenance | None = None
) -> None:
    """``run()`` until SIGINT or SIGTERM calls ``stop()``; ``beside``, if given, runs in a
    thread of its own meanwhile, and stops with it."""
    import signal
    import threading

    def stop_all(*_: object) -> None:
        stop()
        if beside is not None:
            beside.stop()

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, stop_all)
    thread = None
    if beside is not None:
        thread = threading.Thread(target=beside.run, name="jobplane-maintenance")
        thread.start()
    try:
        run()
    finally:
        stop_all()
        if thread is not None:
            thread.join()


def _maintenance(engine: Engine, broker: dramatiq.Broker, *, role: str) -> Maintenance:
    """This process's maintenance candidate, with every schedule the job modules declare."""
    from jobplane.maintenance.runner import maintenance_for
    from jobplane.registry import load_jobs
    from jobplane.schedules import all_schedules

    settings = get_settings()
    load_jobs(settings.job_modules, demo_jobs=settings.demo_jobs)
    schedules = all_schedules()
    names = ", ".join(s.name for s in schedules) or "none"
    logging.getLogger("jobplane").info(
        "%s started as a maintenance candidate; schedules: %s", role, names
    )
    return maintenance_for(engine, broker, settings, schedules, role=role)
