"""Workflow routes: submitting one, listing them, one in full, cancelling and retrying one.

A workflow is written in one transaction (its row, a task row per step, the order
between them: ``jobplane.library.workflows.submit``), so a workflow the API answered
201 for is whole, and one it refused left nothing behind. An ``Idempotency-Key`` works
as for a task: the same key with the same workflow answers 200 with the first one.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Header, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from pydantic import TypeAdapter, ValidationError
from sqlalchemy import Connection

from jobplane import store
from jobplane.api.admin import MAX_PAGE, MAX_PAGE_SIZE
from jobplane.api.auth import require_token
from jobplane.api.schemas import IdempotencyKey, Problem
from jobplane.api.tasks import EngineDep
from jobplane.api.workflow_schemas import (
    MAX_NESTING,
    NODE_TAGS,
    SubmitWorkflow,
    WorkflowDetail,
    WorkflowPage,
    WorkflowSummary,
)
from jobplane.domain import WorkflowNotFound, WorkflowStatus
from jobplane.library import workflows
from jobplane.models import utcnow

router = APIRouter(prefix="/api", tags=["workflows"], dependencies=[Depends(require_token)])

SUBMIT_ANSWERS: dict[int | str, dict[str, Any]] = {
    200: {
        "model": WorkflowDetail,
        "description": "the Idempotency-Key was used before for the same workflow: that one",
    },
    409: {"model": Problem, "description": "Idempotency-Key reused for another workflow"},
    413: {"model": Problem, "description": "a step's params larger than 64 KiB"},
    422: {
        "model": Problem,
        "description": "the body does not validate, nests too deeply or has too many steps, "
        "a step's job type is unknown or its params do not fit: the message names the step "
        "(workflow.chain[1].group[0]); or the Idempotency-Key is empty or too long",
    },
}
ONE_ERRORS: dict[int | str, dict[str, Any]] = {404: {"model": Problem}}
CHANGE_ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"model": Problem},
    409: {"model": Problem, "description": "the workflow is not in a state that allows it"},
}
#: The request body's schema in the OpenAPI document (``jobplane.api.openapi_workflows``
#: adds the component): the route reads the body itself, to name a step that is wrong
#: the way the rest of the workflow errors do.
REQUEST_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/SubmitWorkflow"}}
        },
    }
}

_WORKFLOW: TypeAdapter[Any] = TypeAdapter(SubmitWorkflow)


@router.post(
    "/workflows",
    status_code=201,
    response_model=WorkflowDetail,
    responses=SUBMIT_ANSWERS,
    openapi_extra=REQUEST_BODY,
)
def submit_workflow(
    body: Annotated[Any, Body()],
    request: Request,
    response: Response,
    engine: EngineDep,
    idempotency_key: Annotated[IdempotencyKey | None, Header()] = None,
) -> WorkflowDetail:
    """Submit a workflow: every step a task, written with the order between them in one
    transaction; the steps that wait on none are published at once."""
    node = parse_workflow(body)
    with engine.begin() as conn:
        submitted = workflows.submit(
            conn, node, request.app.state.settings, utcnow(), idempotency_key=idempotency_key
        )
        if not submitted.created:
            response.status_code = 200
        return read_detail(conn, submitted.workflow_id)


def parse_workflow(body: Any) -> workflows.Node:
    """The workflow ``body`` describes, or a 422 (``RequestValidationError``) naming the
    part that is wrong as ``workflow.chain[1].group[0].priority``."""
    too_deep = nesting_fault(body)
    if too_deep is not None:
        raise _invalid(too_deep, f"chains and groups nest at most {MAX_NESTING} levels")
    try:
        parsed = _WORKFLOW.validate_python(body)
    except ValidationError as error:
        raise RequestValidationError(
            [
                {"loc": ("body", step_path(item["loc"])), "msg": item["msg"], "type": item["type"]}
                for item in error.errors(include_url=False)
            ]
        ) from None
    node: workflows.Node = parsed.to_node()
    return node


def nesting_fault(body: Any) -> str | None:
    """Where ``body`` nests chains and groups deeper than ``MAX_NESTING``, or None.

    Walked with a stack of its own rather than by recursion: any depth the JSON parser
    let through is looked at without using Python's.
    """
    for value, path, depth in _nodes(body):
        if depth > MAX_NESTING and any(key in value for key in ("chain", "group")):
            return path
    return None


def _nodes(body: Any) -> Iterator[tuple[dict[str, Any], str, int]]:
    """Every object of the tree that may be a node: (it, its path, its level)."""
    stack: list[tuple[Any, str, int]] = [(body, "workflow", 1)]
    while stack:
        value, path, depth = stack.pop()
        if not isinstance(value, dict):
            continue
        yield value, path, depth
        for key in ("chain", "group"):
            members = value.get(key)
            if isinstance(members, list):
                stack += [(m, f"{path}.{key}[{i}]", depth + 1) for i, m in enumerate(members)]
        stack.append((value.get("then"), f"{path}.then", depth + 1))


def step_path(loc: tuple[int | str, ...]) -> str:
    """A validation error's location as the library names a step's place:
    ``("chain", "chain", 1, "step", "priority")`` is ``workflow.chain[1].priority``
    (the node kinds pydantic tells apart, at the top, after an index or after
    ``then``, are left out)."""
    path = "workflow"
    for place, part in enumerate(loc):
        if isinstance(part, int):
            path += f"[{part}]"
        elif part in NODE_TAGS and (place == 0 or isinstance(loc[place - 1], int)):
            continue
        elif part in NODE_TAGS and loc[place - 1] == "then":
            continue
        else:
            path += f".{part}"
    return path


def _invalid(where: str, message: str) -> RequestValidationError:
    return RequestValidationError([{"loc": ("body", where), "msg": message, "type": "value_error"}])


@router.get("/admin/workflows", response_model=WorkflowPage)
def list_workflows(
    engine: EngineDep,
    status: WorkflowStatus | None = None,
    page: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 1,
    page_size: Annotated[int, Query(alias="pageSize", ge=1, le=MAX_PAGE_SIZE)] = 50,
) -> WorkflowPage:
    """Workflows, newest first, optionally of one status."""
    with engine.connect() as conn:
        listing = store.workflows.list_workflows(
            conn,
            status=status.value if status else None,
            offset=(page - 1) * page_size,
            limit=page_size,
        )
    return WorkflowPage(
        workflows=[WorkflowSummary.from_workflow(row) for row in listing.workflows],
        total=listing.total,
        page=page,
        page_size=page_size,
    )


@router.get("/admin/workflows/{workflow_id}", response_model=WorkflowDetail, responses=ONE_ERRORS)
def get_workflow(workflow_id: str, engine: EngineDep) -> WorkflowDetail:
    """Everything about one workflow: its shape, its steps in order, its result."""
    with engine.connect() as conn:
        return read_detail(conn, workflow_id)


@router.post(
    "/admin/workflows/{workflow_id}/cancel",
    response_model=WorkflowDetail,
    responses=CHANGE_ERRORS,
)
def cancel_workflow(workflow_id: str, engine: EngineDep) -> WorkflowDetail:
    """Cancel every step not finished yet (a running one once its body stops)."""
    with engine.begin() as conn:
        store.workflows.cancel_workflow(conn, workflow_id, utcnow())
        return read_detail(conn, workflow_id)


@router.post(
    "/admin/workflows/{workflow_id}/retry",
    response_model=WorkflowDetail,
    responses=CHANGE_ERRORS,
)
def retry_workflow(workflow_id: str, engine: EngineDep) -> WorkflowDetail:
    """Run a failed or cancelled workflow again from the steps that did not complete."""
    with engine.begin() as conn:
        store.workflows.retry_workflow(conn, workflow_id, utcnow())
        return read_detail(conn, workflow_id)


def read_detail(conn: Connection, workflow_id: str) -> WorkflowDetail:
    """The workflow, its steps and (once completed) its result; ``WorkflowNotFound``."""
    row = store.workflows.get_workflow(conn, workflow_id)
    if row is None:
        raise WorkflowNotFound(f"no workflow with id {workflow_id!r}")
    steps = store.workflows.workflow_steps(conn, workflow_id)
    completed = row.status == WorkflowStatus.COMPLETED
    result = store.workflows.workflow_result(conn, row.shape) if completed else None
    return WorkflowDetail.from_workflow_steps(row, steps, result)
