"""The FastAPI application."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from sqlalchemy import Engine

from jobplane.api import (
    admin,
    dashboard,
    docs,
    errors,
    events,
    health,
    metrics,
    openapi,
    schedules,
    slots,
    stats,
    task_waits,
    tasks,
    workflows,
)
from jobplane.api.front_door import FrontDoor
from jobplane.api.security_headers import SecurityHeaders
from jobplane.db import engine_from_settings
from jobplane.registry import load_jobs
from jobplane.settings import Settings


def create_app(settings: Settings, *, engine: Engine | None = None) -> FastAPI:
    """The API for ``settings``; loads the job modules."""
    load_jobs(settings.job_modules, demo_jobs=settings.demo_jobs)
    owns_engine = engine is None

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        await task_waits.close_listener(app)
        await tasks.close_submissions(app)
        if owns_engine:
            app.state.engine.dispose()

    app = FastAPI(
        title="jobplane",
        summary="Durable background jobs: submit, watch, cancel.",
        lifespan=lifespan,
        # FastAPI's OpenTelemetry hooks ask the global providers on every request
        # (5% of the API's CPU under load); jobplane exports Prometheus metrics instead.
        telemetry={"tracing": False, "metrics": False, "logs": False},
        # Served by jobplane.api.docs from installed files instead of a CDN.
        docs_url=None,
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.engine = engine or engine_from_settings(settings)
    app.state.event_streams = slots.Slots(
        settings.max_event_streams,
        error=slots.TooManyStreams,
        what="event streams",
        setting="JOBPLANE_MAX_EVENT_STREAMS",
    )
    app.state.task_waits = slots.Slots(
        settings.max_task_waits,
        error=slots.TooManyWaits,
        what="long polls",
        setting="JOBPLANE_MAX_TASK_WAITS",
    )
    # The middleware added last is the outermost: the front door sees each request
    # before the rest of the app, and every answer, its refusals too, gets the headers.
    app.add_middleware(FrontDoor, settings=settings)
    app.add_middleware(SecurityHeaders)
    errors.install(app)
    app.include_router(tasks.router)
    app.include_router(admin.router)
    app.include_router(workflows.router)
    app.include_router(schedules.router)
    app.include_router(health.router)
    app.include_router(stats.router)
    app.include_router(events.router)
    app.include_router(metrics.router)
    dashboard.install(app)
    docs.install(app)
    openapi.install(app)
    return app
