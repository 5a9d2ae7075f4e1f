"""Links in the OpenAPI document: what a client can do next with an answer.

An answer that names a task links to every route that takes a task id (read it, its
detail, its logs, cancel it, retry it), one that names a workflow to every route that
takes a workflow id, and the schedule list links to running one.
Clients and tools follow them: schemathesis's stateful phase chains submit → read →
cancel → retry through these links, and checks, for example, that a task a 201 named
can then be read.
"""

from __future__ import annotations

from typing import Any

#: The routes that take a task id, by link name: (method, path, what the link does).
TASK_ROUTES: dict[str, tuple[str, str, str]] = {
    "GetTask": ("get", "/api/tasks/{task_id}", "the task's state"),
    "GetTaskDetail": ("get", "/api/admin/tasks/{task_id}", "everything about the task"),
    "GetTaskLogs": ("get", "/api/admin/tasks/{task_id}/logs", "the task's log lines"),
    "CancelTask": ("post", "/api/admin/tasks/{task_id}/cancel", "cancel the task"),
    "RetryTask": ("post", "/api/admin/tasks/{task_id}/retry", "run the task again"),
}

#: Answers that name a task: (method, path, status, where the task id is in the body).
TASK_ANSWERS: list[tuple[str, str, str, str]] = [
    ("post", "/api/tasks", "201", "/taskId"),
    ("post", "/api/tasks", "200", "/taskId"),  # the same Idempotency-Key again
    ("post", "/api/tasks/batch", "201", "/taskIds/0"),
    ("get", "/api/admin/tasks", "200", "/tasks/0/taskId"),
    ("post", "/api/admin/tasks/{task_id}/cancel", "200", "/taskId"),
    ("post", "/api/admin/tasks/{task_id}/retry", "200", "/taskId"),
    ("post", "/api/admin/schedules/{name}/run", "201", "/taskId"),
]

#: The routes that take a workflow id, by link name, as ``TASK_ROUTES``.
WORKFLOW_ROUTES: dict[str, tuple[str, str, str]] = {
    "GetWorkflow": ("get", "/api/admin/workflows/{workflow_id}", "the workflow and its steps"),
    "CancelWorkflow": ("post", "/api/admin/workflows/{workflow_id}/cancel", "cancel it"),
    "RetryWorkflow": ("post", "/api/admin/workflows/{workflow_id}/retry", "run it again"),
}

#: Answers that name a workflow, as ``TASK_ANSWERS``.
WORKFLOW_ANSWERS: list[tuple[str, str, str, str]] = [
    ("post", "/api/workflows", "201", "/workflowId"),
    ("post", "/api/workflows", "200", "/workflowId"),  # the same Idempotency-Key again
    ("get", "/api/admin/workflows", "200", "/workflows/0/workflowId"),
    ("get", "/api/admin/workflows/{workflow_id}", "200", "/workflowId"),
    ("post", "/api/admin/workflows/{workflow_id}/cancel", "200", "/workflowId"),
    ("post", "/api/admin/workflows/{workflow_id}/retry", "200", "/workflowId"),
]

SCHEDULES = ("get", "/api/admin/schedules", "200")
RUN_SCHEDULE = ("post", "/api/admin/schedules/{name}/run")


def add_links(document: dict[str, Any]) -> None:
    """Add the links to ``document``'s answers (every route named here must be in it)."""
    paths = document["paths"]
    for answers, routes, parameter in (
        (TASK_ANSWERS, TASK_ROUTES, "path.task_id"),
        (WORKFLOW_ANSWERS, WORKFLOW_ROUTES, "path.workflow_id"),
    ):
        for method, path, status, pointer in answers:
            links = _links_of(paths, method, path, status)
            for name, (target_method, target_path, description) in routes.items():
                links[name] = {
                    "operationId": paths[target_path][target_method]["operationId"],
                    "parameters": {parameter: f"$response.body#{pointer}"},
                    "description": description,
                }
    method, path, status = SCHEDULES
    target_method, target_path = RUN_SCHEDULE
    _links_of(paths, method, path, status)["RunSchedule"] = {
        "operationId": paths[target_path][target_method]["operationId"],
        "parameters": {"path.name": "$response.body#/schedules/0/name"},
        "description": "run the first schedule now",
    }


def _links_of(paths: dict[str, Any], method: str, path: str, status: str) -> dict[str, Any]:
    links: dict[str, Any] = paths[path][method]["responses"][status].setdefault("links", {})
    return links
