"""Submitting tasks and reading one back: the routes a submitter uses."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Header, Query, Request, Response
from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool

from jobplane import service, store
from jobplane.api import task_waits
from jobplane.api.auth import require_token
from jobplane.api.schemas import (
    BatchCreated,
    IdempotencyKey,
    Problem,
    SubmitBatch,
    SubmitTask,
    TaskDetail,
)
from jobplane.db import make_async_engine, schema_of
from jobplane.domain import TaskNotFound
from jobplane.group_commit import AsyncGroupCommit, GroupCommit
from jobplane.models import utcnow
from jobplane.settings import Settings
from jobplane.store.rows import TaskRow
from jobplane.timeouts import PostgresTimeouts

router = APIRouter(prefix="/api/tasks", tags=["tasks"], dependencies=[Depends(require_token)])

ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": Problem, "description": "missing or invalid token"},
    409: {"model": Problem, "description": "Idempotency-Key reused for another submission"},
    413: {"model": Problem, "description": "params larger than 64 KiB"},
    422: {"model": Problem, "description": "unknown job type, invalid params or Idempotency-Key"},
    503: {"model": Problem, "description": "the database is unreachable"},
}


async def engine_of(request: Request) -> Engine:  # async: no thread hop for a lookup
    engine: Engine = request.app.state.engine
    return engine


EngineDep = Annotated[Engine, Depends(engine_of)]


@router.post(
    "", status_code=201, response_model=TaskDetail, responses={200: {"model": TaskDetail}, **ERRORS}
)
async def submit_task(
    body: SubmitTask,
    request: Request,
    response: Response,
    idempotency_key: Annotated[IdempotencyKey | None, Header()] = None,
) -> TaskDetail:
    """Submit a job; the task row and its outbox row are written in one transaction."""
    state = request.app.state
    submission = body.to_submission()
    if idempotency_key is None:
        # The common case: committed together with the submissions arriving meanwhile
        # (jobplane.group_commit), without occupying a thread of the pool while it waits.
        task = service.build_task(submission, state.settings, utcnow())
        await submissions(request.app).run_async(task)
        return TaskDetail.from_task(task)
    row, created = await run_in_threadpool(
        submit_once, state.engine, submission, state.settings, idempotency_key
    )
    if not created:
        response.status_code = 200
    return TaskDetail.from_task(row)


SubmissionsWriter = GroupCommit[TaskRow, None] | AsyncGroupCommit[TaskRow, None]


def submissions(app: FastAPI) -> SubmissionsWriter:
    """The app's writer of submissions without an Idempotency-Key, made at first use.

    Submissions are written in shared transactions (``jobplane.group_commit``); on PostgreSQL
    from the event loop itself, through psycopg's async connections, so the writer is
    made inside the loop that serves the requests (an asyncio engine is bound to it).
    """
    writer: SubmissionsWriter | None = getattr(app.state, "submissions", None)
    if writer is None:
        writer = app.state.submissions = _new_submissions_writer(
            app.state.engine, app.state.settings
        )
    return writer


def _new_submissions_writer(engine: Engine, settings: Settings) -> SubmissionsWriter:
    name = "jobplane-submissions"
    if engine.dialect.name != "postgresql":
        return GroupCommit(engine, service.write_new_tasks, name=name)
    url = engine.url.render_as_string(hide_password=False)
    # One writer, one connection. Its only statement reads no table, so no plan of it
    # can go stale as tables grow: PostgreSQL may keep a generic plan, instead of
    # planning each insert again (about a fifth of a submission's cost).
    async_engine = make_async_engine(
        url,
        timeouts=PostgresTimeouts.from_settings(settings),
        schema=schema_of(engine),
        pool_size=1,
        max_overflow=1,
        connect_args={},
    )
    # On PostgreSQL a batch of submissions is one statement (tasks, outbox rows, NOTIFY).
    return AsyncGroupCommit(async_engine, service.write_new_tasks_async, name=name, autocommit=True)


async def close_submissions(app: FastAPI) -> None:
    """Let the queued submissions be written; for the app's shutdown."""
    writer = getattr(app.state, "submissions", None)
    if writer is not None:
        await writer.aclose()


def submit_once(
    engine: Engine, submission: service.Submission, settings: Settings, idempotency_key: str
) -> tuple[TaskRow, bool]:
    with engine.begin() as conn:
        return service.submit(conn, submission, settings, utcnow(), idempotency_key=idempotency_key)


@router.post("/batch", status_code=201, response_model=BatchCreated, responses=ERRORS)
def submit_batch(body: SubmitBatch, request: Request, engine: EngineDep) -> BatchCreated:
    """Submit up to 1,000 jobs in one transaction; their ids come back in order."""
    submissions = [task.to_submission() for task in body.tasks]
    with engine.begin() as conn:
        ids = service.submit_batch(conn, submissions, request.app.state.settings, utcnow())
    return BatchCreated(task_ids=ids)


WAIT_DESCRIPTION = (
    "Seconds to wait for the task to finish (at most 60): the answer comes as soon as it "
    "is completed, failed, cancelled or skipped, or after this long with its current state. "
    "An API process holds at most JOBPLANE_MAX_TASK_WAITS such requests at once; one more "
    "is answered 503 too_many_waits, with Retry-After."
)


@router.get(
    "/{task_id}",
    response_model=TaskDetail,
    responses={404: {"model": Problem}},
)
async def get_task(
    task_id: str,
    request: Request,
    wait: Annotated[
        float | None, Query(ge=0, le=task_waits.MAX_WAIT, description=WAIT_DESCRIPTION)
    ] = None,
) -> TaskDetail:
    """The current state of one task; with ``wait``, once it finished (a long poll)."""
    engine: Engine = request.app.state.engine

    async def read() -> TaskRow:
        return await run_in_threadpool(load_task, engine, task_id)

    if not wait:
        return TaskDetail.from_task(await read())
    # Waits on the event loop, holding no thread: only each read takes one, briefly.
    with request.app.state.task_waits.one():  # none free: 503 with Retry-After
        row = await task_waits.until_finished(request.app, task_id, wait, read)
    return TaskDetail.from_task(row)


def load_task(engine: Engine, task_id: str) -> TaskRow:
    """The task, or ``TaskNotFound``."""
    with engine.connect() as conn:
        row = store.tasks.get_task(conn, task_id)
    if row is None:
        raise TaskNotFound(f"no task with id {task_id!r}")
    return row
