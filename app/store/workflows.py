"""Workflows: writing one with its steps, reading them, cancelling and retrying one.

What a step's end sets off lives in ``jobplane.store.followups``. Callers own the
transaction: each function takes ``conn`` and never commits.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, delete, func, insert, select, update

from jobplane.domain import InvalidTransition, TaskStatus, WorkflowNotFound
from jobplane.models import Outbox, Task, TaskLog, Workflow, WorkflowEdge
from jobplane.store.followups import (
    COMPLETED,
    RUNNING_WORKFLOW,
    assemble,
    count_waiting,
    ids_in,
    publish_ready,
)
from jobplane.store.guards import FINISHED, PENDING, RUNNING, may_become
from jobplane.store.rows import TASK_COLUMNS, TaskRow
from jobplane.store.tasks import cancel_pending, insert_tasks

#: Edges per INSERT: a group followed by a group has one per pair of their members.
_EDGES_PER_STATEMENT = 5000
#: What a workflow's retry starts again.
_RESTARTABLE = {TaskStatus.FAILED, TaskStatus.CANCELLED}


@dataclass(frozen=True, slots=True)
class WorkflowRow:
    """A workflow (``jobplane.models.Workflow`` says what each column holds), and how
    many of its steps are in each status."""

    id: str
    status: str
    shape: Any
    steps: int
    ends_left: int
    error: str | None
    created_at: datetime
    updated_at: datetime
    completed_at: datetime | None
    step_counts: dict[str, int] = field(default_factory=dict)

    @property
    def completed_steps(self) -> int:
        return self.step_counts.get(COMPLETED, 0)


_WORKFLOW_COLUMNS = (
    Workflow.id,
    Workflow.status,
    Workflow.shape,
    Workflow.steps,
    Workflow.ends_left,
    Workflow.error,
    Workflow.created_at,
    Workflow.updated_at,
    Workflow.completed_at,
)


def insert_workflow(
    conn: Connection,
    *,
    workflow_id: str,
    shape: Any,
    tasks: Sequence[TaskRow],
    edges: Sequence[tuple[str, str]],
    ends: int,
    now: datetime,
    idempotency_key: str | None = None,
    request_hash: str | None = None,
) -> None:
    """Write a workflow, its steps (those waiting on none with their outbox rows) and
    the order between them, in the caller's transaction.

    The workflow's row goes first: a concurrent one under the same ``idempotency_key``
    fails at it (``IntegrityError``), before any step is written.
    """
    conn.execute(
        insert(Workflow).values(
            id=workflow_id,
            status=RUNNING_WORKFLOW,
            shape=shape,
            steps=len(tasks),
            ends_left=ends,
            created_at=now,
            updated_at=now,
            idempotency_key=idempotency_key,
            request_hash=request_hash,
        )
    )
    insert_tasks(conn, tasks)
    for start in range(0, len(edges), _EDGES_PER_STATEMENT):
        chunk = edges[start : start + _EDGES_PER_STATEMENT]
        conn.execute(insert(WorkflowEdge), [{"before_id": b, "after_id": a} for b, a in chunk])


@dataclass(frozen=True, slots=True)
class KeyedWorkflow:
    """The workflow an idempotency key names, and the fingerprint it was written with."""

    id: str
    request_hash: str | None


def find_by_idempotency_key(conn: Connection, key: str) -> KeyedWorkflow | None:
    found = conn.execute(
        select(Workflow.id, Workflow.request_hash).where(Workflow.idempotency_key == key)
    ).first()
    return None if found is None else KeyedWorkflow(found.id, found.request_hash)


def get_workflow(conn: Connection, workflow_id: str) -> WorkflowRow | None:
    row = conn.execute(select(*_WORKFLOW_COLUMNS).where(Workflow.id == workflow_id)).first()
    if row is None:
        return None
    return _workflow_row(row, _step_counts(conn, [workflow_id])[workflow_id])


def workflow_steps(conn: Connection, workflow_id: str) -> list[TaskRow]:
    """A workflow's steps, in the order they appear in it."""
    rows = conn.execute(select(*TASK_COLUMNS).where(Task.workflow_id == workflow_id))
    steps = {task.id: task for task in map(TaskRow.from_row, rows)}
    shape = conn.execute(select(Workflow.shape).where(Workflow.id == workflow_id)).scalar()
    order = {task_id: place for place, task_id in enumerate(step_ids(shape))}
    return sorted(steps.values(), key=lambda task: order.get(task.id, len(order)))


def step_ids(shape: Any) -> list[str]:
    """The task ids of a workflow's shape, in the order they appear in it."""
    if isinstance(shape, str):
        return [shape]
    if isinstance(shape, list):
        return [task_id for member in shape for task_id in step_ids(member)]
    if isinstance(shape, dict):
        return [
            task_id
            for key in ("chain", "group", "then")
            for task_id in step_ids(shape.get(key, []))
        ]
    return []


def result_tree(shape: Any) -> Any:
    """Whose results a workflow's result is made of, as a ``pipe_from`` tree: a step's
    own; a chain's last member's; a group's members', in order (or its ``then``'s)."""
    if isinstance(shape, str):
        return shape
    if "chain" in shape:
        return result_tree(shape["chain"][-1])
    if "then" in shape:
        return result_tree(shape["then"])
    return [result_tree(member) for member in shape["group"]]


def workflow_result(conn: Connection, shape: Any) -> Any:
    """A completed workflow's result (see ``result_tree``)."""
    tree = result_tree(shape)
    ids = ids_in(tree)
    taken = select(Task.id, Task.result).where(Task.id.in_(ids))
    return assemble(tree, {row.id: row.result for row in conn.execute(taken)})


def unfinished_end_step(conn: Connection, shape: Any) -> str | None:
    """One of the workflow's end steps (those its result is made of: it has not ended
    before they did) that has not finished, or None."""
    ends = ids_in(result_tree(shape))
    unfinished = select(Task.id).where(Task.id.in_(ends), Task.status.not_in(FINISHED))
    found: str | None = conn.execute(unfinished.limit(1)).scalar()
    return found


@dataclass(frozen=True, slots=True)
class WorkflowListing:
    workflows: list[WorkflowRow]
    total: int


def list_workflows(
    conn: Connection, *, status: str | None, offset: int, limit: int
) -> WorkflowListing:
    """Workflows, newest first, optionally of one status."""
    where = [] if status is None else [Workflow.status == status]
    rows = conn.execute(
        select(*_WORKFLOW_COLUMNS)
        .where(*where)
        .order_by(Workflow.created_at.desc(), Workflow.id)
        .offset(offset)
        .limit(limit)
    ).all()
    total = conn.execute(select(func.count()).select_from(Workflow).where(*where)).scalar_one()
    counts = _step_counts(conn, [row.id for row in rows])
    return WorkflowListing([_workflow_row(row, counts[row.id]) for row in rows], total)


def _workflow_row(row: Any, step_counts: dict[str, int]) -> WorkflowRow:
    return WorkflowRow(**row._asdict(), step_counts=step_counts)


def _step_counts(conn: Connection, workflow_ids: Sequence[str]) -> dict[str, dict[str, int]]:
    counts: dict[str, dict[str, int]] = defaultdict(dict)
    if workflow_ids:
        for row in conn.execute(
            select(Task.workflow_id, Task.status, func.count())
            .where(Task.workflow_id.in_(workflow_ids))
            .group_by(Task.workflow_id, Task.status)
        ):
            counts[str(row[0])][row[1]] = row[2]
    return counts


def cancel_workflow(conn: Connection, workflow_id: str, now: datetime) -> WorkflowRow:
    """Cancel every step not finished yet: pending ones at once, running ones once their
    bodies stop (as ``store.tasks.cancel_task``); a running workflow is cancelled.

    Raises ``WorkflowNotFound``, or ``InvalidTransition`` when every step has finished.
    """
    workflow = _locked(conn, workflow_id)
    pending = cancel_pending(
        conn, [Task.workflow_id == workflow_id], now, error="cancelled with its workflow"
    )
    running = conn.execute(
        update(Task)
        .where(Task.workflow_id == workflow_id, Task.status == RUNNING)
        .values(cancel_requested=True)
    ).rowcount
    if not pending and not running and workflow.status != RUNNING_WORKFLOW:
        raise InvalidTransition(
            f"workflow {workflow_id} is already {workflow.status}", status=workflow.status
        )
    conn.execute(
        update(Workflow)
        .where(Workflow.id == workflow_id, Workflow.status == RUNNING_WORKFLOW)
        .values(
            status=TaskStatus.CANCELLED.value,
            error="cancelled",
            completed_at=now,
            updated_at=now,
        )
    )
    found = get_workflow(conn, workflow_id)
    assert found is not None
    return found


def retry_workflow(conn: Connection, workflow_id: str, now: datetime) -> WorkflowRow:
    """Run a failed or cancelled workflow again from where it stopped: its failed and
    cancelled steps are pending again (their retries counted afresh), those whose steps
    before them all completed published now, the others when those complete.

    Raises ``WorkflowNotFound``, or ``InvalidTransition`` unless the workflow failed or
    was cancelled and none of its steps still runs.
    """
    workflow = _locked(conn, workflow_id)
    if workflow.status not in {status.value for status in _RESTARTABLE}:
        raise InvalidTransition(
            f"only a failed or cancelled workflow can be retried; workflow {workflow_id} "
            f"is {workflow.status}",
            status=workflow.status,
        )
    still_running = conn.execute(
        select(func.count()).where(Task.workflow_id == workflow_id, Task.status == RUNNING)
    ).scalar_one()
    if still_running:
        raise InvalidTransition(
            f"workflow {workflow_id} still has {still_running} step(s) running; "
            "retry once they have stopped",
            status=workflow.status,
        )
    count_waiting(conn, workflow_id)
    fresh = {
        "retry_count": 0,
        "cancel_requested": False,
        "completed_at": None,
        "cancelled_at": None,
        "error": None,
        "progress": 0,
        "total": 0,
    }
    restartable = may_become(TaskStatus.PENDING, _RESTARTABLE)
    ready = conn.execute(
        update(Task)
        .where(Task.workflow_id == workflow_id, restartable, Task.waiting_on <= 0)
        .values(**fresh)
        .returning(Task.id)
    ).scalars()
    publish_ready(conn, list(ready), only=_RESTARTABLE, now=now)
    # The others wait, pending with no outbox row, for the steps before them.
    conn.execute(
        update(Task)
        .where(Task.workflow_id == workflow_id, restartable, Task.waiting_on > 0)
        .values(status=PENDING, updated_at=now, dispatch=Task.dispatch + 1, **fresh)
    )
    waited_on = select(WorkflowEdge.before_id).where(WorkflowEdge.before_id == Task.id)
    ends_left = conn.execute(
        select(func.count()).where(
            Task.workflow_id == workflow_id, Task.status != COMPLETED, ~waited_on.exists()
        )
    ).scalar_one()
    conn.execute(
        update(Workflow)
        .where(Workflow.id == workflow_id)
        .values(
            status=RUNNING_WORKFLOW,
            error=None,
            completed_at=None,
            ends_left=ends_left,
            updated_at=now,
        )
    )
    found = get_workflow(conn, workflow_id)
    assert found is not None
    return found


def _locked(conn: Connection, workflow_id: str) -> Any:
    """The workflow's row, locked until the transaction ends: a cancel and a retry of
    one workflow take turns."""
    row = conn.execute(
        select(Workflow.id, Workflow.status).where(Workflow.id == workflow_id).with_for_update()
    ).first()
    if row is None:
        raise WorkflowNotFound(f"no workflow with id {workflow_id!r}")
    return row


def delete_finished_before(conn: Connection, cutoff: datetime, limit: int) -> int:
    """Delete up to ``limit`` workflows that ended before ``cutoff``, with their steps,
    the steps' logs and outbox rows, and the order between them; how many it deleted."""
    ended = (
        select(Workflow.id)
        .where(Workflow.status != RUNNING_WORKFLOW, Workflow.completed_at < cutoff)
        .order_by(Workflow.completed_at)
        .limit(limit)
    )
    workflow_ids = list(conn.execute(ended).scalars())
    if not workflow_ids:
        return 0
    steps = select(Task.id).where(Task.workflow_id.in_(workflow_ids))
    # A workflow ended with a step still running (cancelled while its body ran) is kept
    # until that step has stopped.
    live = conn.execute(
        select(func.count()).where(Task.workflow_id.in_(workflow_ids), Task.status.not_in(FINISHED))
    ).scalar_one()
    if live:
        workflow_ids = _without_live(conn, workflow_ids)
        if not workflow_ids:
            return 0
        steps = select(Task.id).where(Task.workflow_id.in_(workflow_ids))
    conn.execute(delete(WorkflowEdge).where(WorkflowEdge.before_id.in_(steps)))
    conn.execute(delete(TaskLog).where(TaskLog.task_id.in_(steps)))
    conn.execute(delete(Outbox).where(Outbox.task_id.in_(steps)))
    conn.execute(delete(Task).where(Task.workflow_id.in_(workflow_ids)))
    return conn.execute(delete(Workflow).where(Workflow.id.in_(workflow_ids))).rowcount


def _without_live(conn: Connection, workflow_ids: Iterable[str]) -> list[str]:
    live = set(
        conn.execute(
            select(Task.workflow_id)
            .where(Task.workflow_id.in_(list(workflow_ids)), Task.status.not_in(FINISHED))
            .distinct()
        ).scalars()
    )
    return [workflow_id for workflow_id in workflow_ids if workflow_id not in live]
