"""Each of the client's operations as one HTTP request and the parsing of its answer,
written once for ``Client`` and ``AsyncClient``: they differ only in how they send it."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar
from urllib.parse import quote

from jobplane.library.results import LogPage, Task, TaskPage, Workflow, WorkflowPage
from jobplane.settings import Settings

T = TypeVar("T")

#: The API's address when neither the caller nor ``JOBPLANE_URL`` gives one.
DEFAULT_URL: str = Settings.model_fields["url"].default


@dataclass(frozen=True)
class Call(Generic[T]):
    """One request to the API, and how to read its successful answer."""

    method: str
    path: str
    parse: Callable[[Any], T]
    params: dict[str, Any] | None = None
    json: Any = None
    headers: dict[str, str] | None = None
    #: seconds the API may hold the answer back (a long poll), beyond the usual timeout
    hold: int = 0


def endpoint(url: str | None, token: str | None) -> tuple[str, dict[str, str]]:
    """The API's base URL and the headers for ``token``, from the environment when None
    (``JOBPLANE_URL``, default http://127.0.0.1:8000; ``JOBPLANE_API_TOKEN``)."""
    base = url or os.environ.get("JOBPLANE_URL") or DEFAULT_URL
    if token is None:
        token = os.environ.get("JOBPLANE_API_TOKEN")
    return base.rstrip("/"), {"Authorization": f"Bearer {token}"} if token else {}


def submission(
    type: str,
    params: Mapping[str, Any] | None = None,
    *,
    queue: str | None = None,
    priority: int | None = None,
    delay: float | None = None,
    max_retries: int | None = None,
    timeout: int | None = None,
) -> dict[str, Any]:
    """A submission's JSON body; what is None is left to the job's defaults."""
    body: dict[str, Any] = {"type": type, "params": dict(params or {})}
    for key, value in (
        ("queue", queue),
        ("priority", priority),
        ("delaySeconds", delay),
        ("maxRetries", max_retries),
        ("timeoutSeconds", timeout),
    ):
        if value is not None:
            body[key] = value
    return body


def submit(body: dict[str, Any], idempotency_key: str | None) -> Call[Task]:
    return Call("POST", "/api/tasks", Task.from_json, json=body, headers=_key(idempotency_key))


def _key(idempotency_key: str | None) -> dict[str, str] | None:
    # An empty key is sent too: the API refuses it, rather than the submission silently
    # losing its idempotency (say, from an unset shell variable).
    return {"Idempotency-Key": idempotency_key} if idempotency_key is not None else None


def submit_batch(items: Iterable[Mapping[str, Any]]) -> Call[list[str]]:
    """``items``: mappings of ``submission``'s keyword names (``type``, ``params``, …)."""
    body = {"tasks": [submission(**item) for item in items]}
    return Call("POST", "/api/tasks/batch", _task_ids, json=body)


def _task_ids(answer: dict[str, Any]) -> list[str]:
    return [str(task_id) for task_id in answer["taskIds"]]


def get_task(task_id: str, *, wait: int | None = None) -> Call[Task]:
    """The task; with ``wait``, the API answers once it is terminal or after that long."""
    params = {"wait": wait} if wait else None
    return Call("GET", f"/api/tasks/{_segment(task_id)}", Task.from_json, params, hold=wait or 0)


def cancel(task_id: str) -> Call[Task]:
    return Call("POST", f"/api/admin/tasks/{_segment(task_id)}/cancel", Task.from_json)


def retry(task_id: str) -> Call[Task]:
    return Call("POST", f"/api/admin/tasks/{_segment(task_id)}/retry", Task.from_json)


def logs(task_id: str, *, level: str | None, page: int, page_size: int) -> Call[LogPage]:
    params = _query(level=level.upper() if level else None, page=page, pageSize=page_size)
    return Call("GET", f"/api/admin/tasks/{_segment(task_id)}/logs", LogPage.from_json, params)


def list_tasks(
    *,
    status: str | None,
    type: str | None,
    queue: str | None,
    search: str | None,
    page: int,
    page_size: int,
) -> Call[TaskPage]:
    params = _query(
        status=status, type=type, queue=queue, search=search, page=page, pageSize=page_size
    )
    return Call("GET", "/api/admin/tasks", TaskPage.from_json, params)


def stats() -> Call[dict[str, Any]]:
    return Call("GET", "/api/admin/stats", _json_object)


def schedules() -> Call[dict[str, Any]]:
    return Call("GET", "/api/admin/schedules", _json_object)


def run_schedule(name: str) -> Call[Task]:
    return Call("POST", f"/api/admin/schedules/{_segment(name)}/run", Task.from_json)


def catch_up(*, dry_run: bool, now: datetime | None) -> Call[dict[str, Any]]:
    body: dict[str, Any] = {"dryRun": dry_run}
    if now is not None:
        body["now"] = now.isoformat()
    return Call("POST", "/api/admin/schedules/catch-up", _json_object, json=body)


def submit_workflow(body: dict[str, Any], idempotency_key: str | None) -> Call[Workflow]:
    """``body``: ``POST /api/workflows``'s JSON (``jobplane.library.workflow_json``)."""
    headers = _key(idempotency_key)
    return Call("POST", "/api/workflows", Workflow.from_json, json=body, headers=headers)


def list_workflows(*, status: str | None, page: int, page_size: int) -> Call[WorkflowPage]:
    params = _query(status=status, page=page, pageSize=page_size)
    return Call("GET", "/api/admin/workflows", WorkflowPage.from_json, params)


def get_workflow(workflow_id: str) -> Call[Workflow]:
    return Call("GET", f"/api/admin/workflows/{_segment(workflow_id)}", Workflow.from_json)


def cancel_workflow(workflow_id: str) -> Call[Workflow]:
    path = f"/api/admin/workflows/{_segment(workflow_id)}/cancel"
    return Call("POST", path, Workflow.from_json)


def retry_workflow(workflow_id: str) -> Call[Workflow]:
    path = f"/api/admin/workflows/{_segment(workflow_id)}/retry"
    return Call("POST", path, Workflow.from_json)


def _json_object(answer: dict[str, Any]) -> dict[str, Any]:
    return answer


def _query(**params: Any) -> dict[str, Any]:
    """The query string's parameters that are given."""
    return {key: value for key, value in params.items() if value is not None}


def _segment(name: str) -> str:
    """``name`` as one path segment: a ``/`` in it cannot reach another route."""
    return quote(name, safe="")
