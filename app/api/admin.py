"""Admin routes: listing and inspecting tasks."""

from __future__ import annotations

import enum
from typing import Annotated

from fastapi import APIRouter, Depends, Query

from jobplane import store
from jobplane.api.auth import require_token
from jobplane.api.schemas import LogLine, LogPage, Problem, TaskDetail, TaskPage, TaskSummary
from jobplane.api.tasks import EngineDep, load_task
from jobplane.domain import TaskStatus
from jobplane.models import utcnow

router = APIRouter(
    prefix="/api/admin",
    tags=["admin"],
    dependencies=[Depends(require_token)],
    responses={401: {"model": Problem}},
)

MAX_PAGE_SIZE = 500
#: Highest page number accepted (the offset must fit the database's integers).
MAX_PAGE = 1_000_000


@router.get("/tasks", response_model=TaskPage)
def list_tasks(
    engine: EngineDep,
    status: TaskStatus | None = None,
    type: Annotated[str | None, Query(max_length=200)] = None,
    queue: Annotated[str | None, Query(max_length=100)] = None,
    search: Annotated[
        str | None, Query(max_length=36, description="the start of a task id (any case)")
    ] = None,
    page: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 1,
    page_size: Annotated[int, Query(alias="pageSize", ge=1, le=MAX_PAGE_SIZE)] = 50,
) -> TaskPage:
    """Tasks, newest first, filtered by status, type, queue and the start of the id."""
    filters = store.tasks.TaskFilter(
        status=status.value if status else None, type=type, queue=queue, search=search
    )
    with engine.connect() as conn:
        listing = store.tasks.list_tasks(
            conn, filters, offset=(page - 1) * page_size, limit=page_size
        )
    return TaskPage(
        tasks=[TaskSummary.from_task(task) for task in listing.tasks],
        total=listing.total,
        total_is_estimate=listing.total_is_estimate,
        page=page,
        page_size=page_size,
    )


@router.get("/tasks/{task_id}", response_model=TaskDetail, responses={404: {"model": Problem}})
def get_task(task_id: str, engine: EngineDep) -> TaskDetail:
    """Everything about one task."""
    return TaskDetail.from_task(load_task(engine, task_id))


class LogLevel(enum.StrEnum):
    DEBUG = "DEBUG"
    INFO = "INFO"
    WARNING = "WARNING"
    ERROR = "ERROR"
    CRITICAL = "CRITICAL"


@router.get("/tasks/{task_id}/logs", response_model=LogPage, responses={404: {"model": Problem}})
def task_logs(
    task_id: str,
    engine: EngineDep,
    level: LogLevel | None = None,
    page: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 1,
    page_size: Annotated[int, Query(alias="pageSize", ge=1, le=MAX_PAGE_SIZE)] = 100,
) -> LogPage:
    """A task's log lines, oldest first, optionally of one level."""
    load_task(engine, task_id)
    with engine.connect() as conn:
        lines, total = store.logs.list_logs(
            conn,
            task_id,
            level=level.value if level else None,
            offset=(page - 1) * page_size,
            limit=page_size,
        )
    return LogPage(
        lines=[LogLine.from_log(line) for line in lines],
        total=total,
        page=page,
        page_size=page_size,
    )


@router.post(
    "/tasks/{task_id}/cancel",
    response_model=TaskDetail,
    responses={404: {"model": Problem}, 409: {"model": Problem}},
)
def cancel_task(task_id: str, engine: EngineDep) -> TaskDetail:
    """Cancel a pending task now, or stop a running one (cancelRequested, then cancelled)."""
    with engine.begin() as conn:
        return TaskDetail.from_task(store.tasks.cancel_task(conn, task_id, utcnow()))


@router.post(
    "/tasks/{task_id}/retry",
    response_model=TaskDetail,
    responses={404: {"model": Problem}, 409: {"model": Problem}},
)
def retry_task(task_id: str, engine: EngineDep) -> TaskDetail:
    """Start a new run of a failed, cancelled or skipped task."""
    with engine.begin() as conn:
        return TaskDetail.from_task(store.tasks.restart_task(conn, task_id, utcnow()))
