"""The API's error answers as the exceptions the library raises in-process.

The API answers ``{"error": "<stable code>", "message": "…", …}`` with a 4xx or 5xx
status; the code tells apart errors that share a status (a 422 is an unknown job type or
invalid params, a 409 a reused Idempotency-Key or a task in the wrong state). Each error
carries the API's own message and, in ``http_status``, the status it came with.
"""

from __future__ import annotations

from typing import Any

import httpx

from jobplane import domain, schedules


def error_from_answer(response: httpx.Response) -> domain.JobplaneError:
    """The exception for an unsuccessful answer of the API."""
    body = _json_object(response)
    message = str(body.get("message") or response.text or response.reason_phrase)
    error = _typed_error(response, body.get("error"), message, body)
    error.http_status = response.status_code
    return error


def unreachable(url: httpx.URL, error: httpx.HTTPError) -> domain.ApiUnavailable:
    """The exception for an API that could not be reached (refused, timed out…)."""
    return domain.ApiUnavailable(f"cannot reach the API at {url}: {error}")


def _typed_error(
    response: httpx.Response, code: object, message: str, body: dict[str, Any]
) -> domain.JobplaneError:
    status = response.status_code
    if status >= 500:
        return domain.ApiUnavailable(message, retry_after=_retry_after(response))
    if status in (401, 403):
        return domain.Unauthorized(message)
    if status == 413:
        return domain.ParamsTooLarge(message)
    match code:
        case "task_not_found":
            return domain.TaskNotFound(message)
        case "workflow_not_found":
            return domain.WorkflowNotFound(message)
        case "schedule_not_found":
            return schedules.ScheduleNotFound(message)
        case "unknown_job_type":
            known = [str(name) for name in body.get("knownTypes") or []]
            return domain.UnknownJobType("", known, message=message)
        case "idempotency_conflict":
            return domain.IdempotencyConflict(
                message,
                task_id=_text(body.get("taskId")),
                workflow_id=_text(body.get("workflowId")),
            )
        case "invalid_transition":
            return domain.InvalidTransition(message, status=body.get("status"))
    # A 422 is also invalid_request: a field, a query or a header that does not validate
    # (a priority out of range, an empty Idempotency-Key).
    return domain.InvalidParams(message) if status == 422 else domain.JobplaneError(message)


def _text(value: object) -> str | None:
    """A field of the answer that names something: its text, or None when it is absent."""
    return None if value is None else str(value)


def _json_object(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _retry_after(response: httpx.Response) -> float | None:
    """``Retry-After`` in seconds, when it is given as a number (it may also be a date)."""
    try:
        return float(response.headers["Retry-After"])
    except (KeyError, ValueError):
        return None
