"""One place that maps errors to HTTP answers: 4xx for bad input, 503 while a backend is down."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DataError, DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException

from jobplane import domain, schedules, stored_json
from jobplane.api.auth import Forbidden, Unauthorized
from jobplane.api.slots import TooManyStreams, TooManyWaits
from jobplane.maintenance import catchup

logger = logging.getLogger(__name__)

#: Seconds a client should wait before trying again when a backend is unreachable.
RETRY_AFTER = "5"

_STATUS: list[tuple[type[domain.JobplaneError], int, str]] = [
    (Unauthorized, 401, "unauthorized"),
    (Forbidden, 403, "forbidden"),
    (domain.TaskNotFound, 404, "task_not_found"),
    (domain.WorkflowNotFound, 404, "workflow_not_found"),
    (schedules.ScheduleNotFound, 404, "schedule_not_found"),
    (domain.UnknownJobType, 422, "unknown_job_type"),
    (domain.ParamsTooLarge, 413, "params_too_large"),
    (domain.InvalidParams, 422, "invalid_params"),
    (catchup.NowOutOfRange, 422, "invalid_request"),
    (domain.IdempotencyConflict, 409, "idempotency_conflict"),
    (domain.InvalidTransition, 409, "invalid_transition"),
    (TooManyStreams, 503, "too_many_streams"),
    (TooManyWaits, 503, "too_many_waits"),
]


def problem(http_status: int, code: str, message: str, **extra: Any) -> JSONResponse:
    body = {"error": code, "message": message}
    body.update({key: value for key, value in extra.items() if value is not None})
    headers = {503: {"Retry-After": RETRY_AFTER}, 401: {"WWW-Authenticate": "Bearer"}}.get(
        http_status
    )
    return JSONResponse(body, status_code=http_status, headers=headers)


async def _jobplane_error(_request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, domain.JobplaneError)
    return problem_for(error)


def problem_for(error: domain.JobplaneError) -> JSONResponse:
    """The answer to ``error``: its status, code and message (and its details)."""
    for kind, status, code in _STATUS:
        if isinstance(error, kind):
            return problem(
                status,
                code,
                error.message,
                knownTypes=getattr(error, "known", None),
                status=getattr(error, "status", None),
                taskId=getattr(error, "task_id", None),
                workflowId=getattr(error, "workflow_id", None),
            )
    return problem(400, "bad_request", error.message)


async def _validation_error(_request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, RequestValidationError)
    parts = []
    for item in error.errors():
        if item["type"] == "json_invalid":
            parts.append(f"the body is not valid JSON ({item.get('ctx', {}).get('error', '')})")
            continue
        where = ".".join(str(part) for part in item["loc"] if part != "body")
        parts.append(f"{where or 'body'}: {item['msg']}")
    return problem(422, "invalid_request", "; ".join(parts))


async def _http_error(_request: Request, error: Exception) -> JSONResponse:
    """Starlette's own errors (unknown path, unreadable body…), as JSON like ours."""
    assert isinstance(error, StarletteHTTPException)
    if isinstance(error.__cause__, RecursionError):  # FastAPI's parser gave up on it
        message = (
            "the body is nested too deeply to be read "
            f"(params may nest {stored_json.MAX_DEPTH} levels)"
        )
        return problem(422, "invalid_request", message)
    code = {
        400: "bad_request",
        404: "not_found",
        405: "method_not_allowed",
        413: "request_too_large",
    }.get(error.status_code, "http_error")
    response = problem(error.status_code, code, str(error.detail))
    response.headers.update(error.headers or {})
    return response


async def _data_error(_request: Request, error: Exception) -> JSONResponse:
    """A value the database refuses (a NUL character, a number out of range): bad input."""
    assert isinstance(error, DataError)
    reason = str(error.orig).strip().splitlines()[0] if error.orig else "invalid value"
    return problem(422, "invalid_request", f"a value in the request is not acceptable: {reason}")


async def _database_error(_request: Request, error: Exception) -> JSONResponse:
    logger.error("database unavailable: %s", error)
    return problem(503, "database_unavailable", "the database is unreachable; try again shortly")


async def _pool_timeout(_request: Request, error: Exception) -> JSONResponse:
    """Every pooled connection stayed taken (the database hangs, or is overloaded): the
    database is unavailable to this request too, never a 500."""
    logger.error("database unavailable: no pooled connection came free: %s", error)
    message = "every database connection is busy (the database is slow or overloaded); retry soon"
    return problem(503, "database_unavailable", message)


def install(app: FastAPI) -> None:
    app.add_exception_handler(domain.JobplaneError, _jobplane_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(DataError, _data_error)
    app.add_exception_handler(OperationalError, _database_error)
    app.add_exception_handler(DBAPIError, _database_error)
    app.add_exception_handler(PoolTimeout, _pool_timeout)
