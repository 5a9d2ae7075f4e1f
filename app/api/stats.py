"""The platform at a glance: task counts, outbox backlog, workers seen; and the job types."""

from __future__ import annotations

import inspect
import json
from datetime import datetime, timedelta
from typing import Any

from fastapi import APIRouter, Depends, Request
from pydantic import Field
from sqlalchemy import Connection

from jobplane import registry, store
from jobplane.api.auth import require_token
from jobplane.api.schemas import Camel, Problem
from jobplane.api.tasks import EngineDep
from jobplane.domain import TaskStatus
from jobplane.models import utcnow
from jobplane.settings import Settings

router = APIRouter(
    prefix="/api/admin",
    tags=["admin"],
    dependencies=[Depends(require_token)],
    responses={401: {"model": Problem}},
)

#: A worker counts as seen if it reported within this many seconds (it does at every
#: heartbeat, ``JOBPLANE_HEARTBEAT_INTERVAL``).
WORKERS_SEEN_WINDOW = 300.0


class OutboxStats(Camel):
    """Committed tasks the relay has not published yet."""

    backlog: int = Field(description="outbox rows waiting (including delayed tasks)")
    oldest_created_at: datetime | None = Field(description="when the oldest row was written")
    oldest_age_seconds: float | None = Field(description="age of the oldest row, in seconds")


class WorkerSeen(Camel):
    """A worker process (host:pid) that reported recently."""

    worker: str
    last_heartbeat_at: datetime = Field(description="when it last reported")
    running: int = Field(description="tasks it is running now")


class Stats(Camel):
    """Counts by status, the outbox backlog and the workers seen recently."""

    counts: dict[TaskStatus, int] = Field(description="tasks by status (every status listed)")
    total: int
    outbox: OutboxStats
    workers: list[WorkerSeen]
    workers_window_seconds: float = Field(description="how far back workers are looked for")
    generated_at: datetime


def collect_stats(conn: Connection, now: datetime) -> Stats:
    """The platform's numbers, read from the database in ``conn``: from the task counts
    and the workers' reports, never by counting tasks."""
    found = store.tasks.count_by_status(conn)
    counts = {status: found.get(status.value, 0) for status in TaskStatus}
    backlog, oldest = store.stats.outbox_backlog(conn)
    since = now - timedelta(seconds=WORKERS_SEEN_WINDOW)
    workers = [
        WorkerSeen(worker=row.worker, last_heartbeat_at=row.last_seen_at, running=row.running)
        for row in store.workers.seen_since(conn, since)
    ]
    return Stats(
        counts=counts,
        total=sum(found.values()),
        outbox=OutboxStats(
            backlog=backlog,
            oldest_created_at=oldest,
            oldest_age_seconds=max(0.0, (now - oldest).total_seconds()) if oldest else None,
        ),
        workers=workers,
        workers_window_seconds=WORKERS_SEEN_WINDOW,
        generated_at=now,
    )


@router.get("/stats", response_model=Stats)
def stats(engine: EngineDep) -> Stats:
    """Counts by status, outbox backlog and the age of its oldest row, workers seen."""
    with engine.connect() as conn:
        return collect_stats(conn, utcnow())


class JobParam(Camel):
    """One keyword argument of a job."""

    name: str
    required: bool
    default: Any = Field(None, description="its default, when it has a JSON one")


class JobType(Camel):
    """A registered job type and its defaults (null: the platform's default)."""

    name: str
    queue: str
    priority: int
    max_retries: int
    timeout_seconds: int
    concurrency: int | None
    params: list[JobParam]
    accepts_any_params: bool = Field(description="the job takes **kwargs")
    description: str | None


class JobTypes(Camel):
    job_types: list[JobType]


@router.get("/job-types", response_model=JobTypes)
def job_types(request: Request) -> JobTypes:
    """The job types this API accepts, with their parameters and defaults."""
    settings: Settings = request.app.state.settings
    return JobTypes(job_types=[describe_job(spec, settings) for spec in registry.all_jobs()])


def describe_job(spec: registry.JobSpec, settings: Settings) -> JobType:
    """``spec`` as the API describes it: its defaults and the keyword arguments it takes."""
    signature = inspect.signature(spec.fn)
    params = [
        JobParam(name=name, required=p.default is p.empty, default=_json_or_none(p.default))
        for name, p in signature.parameters.items()
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    ]
    return JobType(
        name=spec.name,
        queue=spec.queue,
        priority=spec.priority,
        max_retries=(
            spec.max_retries if spec.max_retries is not None else settings.default_max_retries
        ),
        timeout_seconds=spec.timeout or settings.default_timeout,
        concurrency=spec.concurrency_limit(settings.concurrency),
        params=params,
        accepts_any_params=any(p.kind == p.VAR_KEYWORD for p in signature.parameters.values()),
        description=inspect.getdoc(spec.fn),
    )


def _json_or_none(value: Any) -> Any:
    if value is inspect.Parameter.empty:
        return None
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return None
    return value
