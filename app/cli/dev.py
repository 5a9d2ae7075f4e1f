"""``jobplane dev``: the whole platform in one process on the embedded default."""

from __future__ import annotations

import logging
import secrets
import signal
import threading

import dramatiq
import uvicorn

from jobplane.api.main import create_app
from jobplane.cli.exposure import serving_settings
from jobplane.db import engine_from_settings
from jobplane.maintenance.rescuer import Rescuer
from jobplane.maintenance.runner import maintenance_for
from jobplane.migrate import upgrade
from jobplane.outbox.relay import Relay
from jobplane.registry import load_jobs
from jobplane.schedules import all_schedules
from jobplane.settings import Settings
from jobplane.workers.broker import worker_broker

logger = logging.getLogger("jobplane.dev")

#: Seconds a stopping server waits for open responses (event streams) before cutting them.
STREAMS_GRACE = 3


def with_token(settings: Settings) -> tuple[Settings, bool]:
    """``settings`` with an API token: its own, or a new random one (True: generated)."""
    if settings.api_token:
        return settings, False
    return settings.model_copy(update={"api_token": secrets.token_urlsafe(24)}), True


def run_dev(
    settings: Settings, *, host: str, port: int, threads: int, insecure: bool = False
) -> None:
    """Migrate, then serve API + relay + workers + maintenance until Ctrl-C; a restart
    resumes the work. ``insecure`` (``--insecure-no-auth``): make up no token."""
    # The demo jobs are what a first run of ``jobplane dev`` tries.
    settings = settings.model_copy(update={"demo_jobs": True})
    settings, generated = (settings, False) if insecure else with_token(settings)
    settings = serving_settings(settings, host, port, insecure=insecure)
    upgrade(settings.database_url, schema=settings.db_schema, settings=settings)
    engine = engine_from_settings(settings)
    load_jobs(settings.job_modules, demo_jobs=settings.demo_jobs)
    broker = worker_broker(settings, lambda: engine)
    broker.emit_after("process_boot")  # what Dramatiq's CLI does in each worker process
    maintenance = maintenance_for(engine, broker, settings, all_schedules(), role="dev")
    if settings.broker_url.startswith("memory"):
        _take_over_from_the_last_run(Rescuer.from_settings(engine, broker, settings))
    relay = Relay(engine, broker, settings)
    relay_thread = threading.Thread(target=relay.run, name="jobplane-relay", daemon=True)
    worker = dramatiq.Worker(broker, worker_threads=threads)
    maintenance_thread = threading.Thread(
        target=maintenance.run, name="jobplane-maintenance", daemon=True
    )
    relay_thread.start()
    worker.start()
    maintenance_thread.start()
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(settings, engine=engine),
            host=host,
            port=port,
            access_log=False,
            # Open dashboard event streams would otherwise hold Ctrl-C up.
            timeout_graceful_shutdown=STREAMS_GRACE,
        )
    )
    url = f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}"
    logger.info("jobplane is running: API at %s/ (docs at /docs)", url)
    if generated:
        logger.info("dashboard: %s/#token=%s", url, settings.api_token)
        logger.info("for the CLI: export JOBPLANE_API_TOKEN=%s", settings.api_token)
    elif settings.api_token:  # the operator's own token: not for the log
        logger.info("dashboard: %s/ (log in with JOBPLANE_API_TOKEN)", url)
    else:
        logger.info("dashboard: %s/ (no token)", url)
    # uvicorn handles Ctrl-C / SIGTERM while it serves, then re-raises the signal to
    # the handler that was there before it: make that one a no-op, so the clean stop
    # below runs and the process exits 0.
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: None)
    try:
        server.run()
    finally:
        grace_ms = max(1, int(settings.shutdown_grace * 1000))
        logger.info("stopping: relay, then workers (running jobs get %d ms)", grace_ms)
        maintenance.stop()
        relay.stop()
        relay_thread.join(timeout=5)
        maintenance_thread.join(timeout=5)
        worker.stop(timeout=grace_ms)
        engine.dispose()


def _take_over_from_the_last_run(rescuer: Rescuer) -> None:
    """This process is the only worker of an in-memory broker, a new one at each start:
    whatever a previous run left running died with it, and what it published is lost.
    Recover both now, before the relay publishes, rather than after a timeout."""
    rescuer.recover_dead_workers(stale_before=rescuer.clock())
    rescuer.recover_broker_loss()
