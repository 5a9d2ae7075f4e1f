"""What a task's end sets off, written in the transaction that ends it: its callbacks,
and the steps of its workflow that come after it.

Every statement that finishes tasks returns whether they have follow-ups
(``FOLLOW_UP_COLUMNS``: a workflow's step, or a task with callbacks) and, if so, calls
``after_finished`` with their ids on the same connection. The follow-ups therefore
commit with the outcome or not at all: a worker killed after its step's completion
committed has already published the next step, and one killed before has published
nothing, its step being run again. Most tasks have none, and cost nothing more.

- A completed step takes one off the count of steps each step after it waits on
  (``Task.waiting_on``); the step whose count reaches zero is published (its params
  get the results it takes, ``pipe_from``). The counts are updated with their rows
  locked, in id order: two members of a group completing at the same instant on two
  hosts wait for each other on the row of the step after the group, so exactly one
  of them sees its count reach zero and publishes it.
- A completed step that no step waits on is one of the workflow's ends: the last of
  those completes the workflow.
- A failed or cancelled step fails (cancels) its workflow, and every step that waits
  on it, directly or not, is cancelled: it can never run.

Callers own the transaction: each function takes ``conn`` and never commits.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, bindparam, case, func, insert, select, update

from jobplane.domain import TaskStatus, WorkflowStatus
from jobplane.models import Task, TaskLog, Workflow, WorkflowEdge
from jobplane.store.guards import PENDING, may_become
from jobplane.store.outbox import write_with_outbox
from jobplane.store.requeue import requeue
from jobplane.store.rows import TaskRow

#: Returned by every statement that claims or finishes tasks: whether ``after_finished``
#: must follow for a task (``has_follow_ups``). The columns themselves, not ``IS NOT
#: NULL`` of them: SQLite (3.40) answers that wrongly in an UPDATE's RETURNING when the
#: table has triggers (``jobplane_tasks`` has the counting ones).
FOLLOW_UP_COLUMNS = (Task.workflow_id, Task.callbacks)


def has_follow_ups(workflow_id: str | None, callbacks: object) -> bool:
    """Whether a task of this workflow (None: none) and callbacks has follow-ups."""
    return workflow_id is not None or callbacks is not None


COMPLETED = TaskStatus.COMPLETED.value
FAILED = TaskStatus.FAILED.value
CANCELLED = TaskStatus.CANCELLED.value
RUNNING_WORKFLOW = WorkflowStatus.RUNNING.value


def after_finished(conn: Connection, task_ids: Iterable[str], now: datetime) -> None:
    """The follow-ups of tasks this transaction has just finished (see the module)."""
    ids = sorted(set(task_ids))
    if not ids:
        return
    finished = conn.execute(
        select(
            Task.id,
            Task.type,
            Task.status,
            Task.workflow_id,
            Task.callbacks,
            Task.result,
            Task.error,
        ).where(Task.id.in_(ids))
    ).all()
    _enqueue_callbacks(conn, [row for row in finished if row.callbacks], now)
    steps = [row for row in finished if row.workflow_id is not None]
    completed = [row.id for row in steps if row.status == COMPLETED]
    if completed:
        _after_completed(conn, completed, now)
    stopped = [row for row in steps if row.status in (FAILED, CANCELLED)]
    if stopped:
        _after_stopped(conn, stopped, now)


def _enqueue_callbacks(conn: Connection, finished: Sequence[Any], now: datetime) -> None:
    """A task of its own for each callback the finished tasks' ends call for."""
    new, lines = [], []
    for row in finished:
        if row.status == COMPLETED:
            event, added = "onSuccess", {"task_id": row.id, "result": row.result}
        elif row.status == FAILED:
            event, added = "onFailure", {"task_id": row.id, "error": row.error}
        else:
            continue
        callback = row.callbacks.get(event)
        if callback is None:
            continue
        task = TaskRow.new(
            id=str(uuid.uuid4()),
            type=callback["type"],
            queue=callback["queue"],
            priority=callback["priority"],
            params={**callback["params"], **added},
            max_retries=callback["max_retries"],
            timeout_seconds=callback["timeout_seconds"],
            run_after=now,
            now=now,
        )
        new.append(task.columns())
        message = f"{event}: enqueued task {task.id} ({task.type})"
        lines.append({"task_id": row.id, "level": "INFO", "message": message, "created_at": now})
    if new:
        write_with_outbox(conn, insert(Task).values(new), now)
        conn.execute(insert(TaskLog), lines)


def _after_completed(conn: Connection, completed: list[str], now: datetime) -> None:
    """Steps completed: count them off the steps after them, publish those now free,
    and complete the workflows whose last ends they were."""
    edges = conn.execute(
        select(WorkflowEdge.before_id, WorkflowEdge.after_id).where(
            WorkflowEdge.before_id.in_(completed)
        )
    ).all()
    counted: dict[str, int] = defaultdict(int)
    for edge in edges:
        counted[edge.after_id] += 1
    if counted:
        ready = _count_off(conn, counted)
        if ready:
            publish_ready(conn, ready, only={TaskStatus.PENDING}, now=now)
    waited_on = {edge.before_id for edge in edges}
    ends = [task_id for task_id in completed if task_id not in waited_on]
    if ends:
        _count_off_ends(conn, ends, now)


def _count_off(conn: Connection, counted: dict[str, int]) -> list[str]:
    """Take ``counted[step]`` off each pending step's count; the steps it brought to zero."""
    ids = sorted(counted)
    # Locked in id order first: concurrent completions lock the same rows in the same
    # order, and never deadlock.
    conn.execute(select(Task.id).where(Task.id.in_(ids)).order_by(Task.id).with_for_update())
    rows = conn.execute(
        update(Task)
        .where(Task.id.in_(ids), Task.status == PENDING, Task.waiting_on > 0)
        .values(waiting_on=Task.waiting_on - case(counted, value=Task.id, else_=0))
        .returning(Task.id, Task.waiting_on)
    ).all()
    return [row.id for row in rows if row.waiting_on <= 0]


def _count_off_ends(conn: Connection, ends: list[str], now: datetime) -> None:
    """Ends completed: the workflow whose last end this was is complete."""
    per_workflow: dict[str, int] = defaultdict(int)
    for row in conn.execute(select(Task.workflow_id).where(Task.id.in_(ends))):
        per_workflow[row.workflow_id] += 1
    for workflow_id, count in sorted(per_workflow.items()):
        left = Workflow.ends_left - count
        conn.execute(
            update(Workflow)
            .where(Workflow.id == workflow_id)
            .values(
                ends_left=left,
                status=case(
                    (
                        (left <= 0) & (Workflow.status == RUNNING_WORKFLOW),
                        COMPLETED,
                    ),
                    else_=Workflow.status,
                ),
                completed_at=case(
                    ((left <= 0) & (Workflow.status == RUNNING_WORKFLOW), now),
                    else_=Workflow.completed_at,
                ),
                updated_at=now,
            )
        )


def publish_ready(
    conn: Connection, ready: Sequence[str], *, only: set[TaskStatus], now: datetime
) -> list[str]:
    """Publish steps no longer waiting on any other (in one of the states ``only``):
    first their params get the results they take (``pipe_from``), then each gets an
    outbox row and a new dispatch number. Returns the ids published."""
    piped = conn.execute(
        select(Task.id, Task.params, Task.pipe_from).where(
            Task.id.in_(ready), Task.pipe_from.is_not(None)
        )
    ).all()
    if piped:
        sources = sorted({task_id for row in piped for task_id in ids_in(row.pipe_from)})
        taken = select(Task.id, Task.result).where(Task.id.in_(sources))
        results: dict[str, Any] = {row.id: row.result for row in conn.execute(taken)}
        conn.execute(
            update(Task).where(Task.id == bindparam("b_id")).values(params=bindparam("b_params")),
            [
                {
                    "b_id": row.id,
                    "b_params": {**row.params, "result": assemble(row.pipe_from, results)},
                }
                for row in piped
            ],
        )
    return requeue(
        conn,
        only=only,
        where=[Task.id.in_(ready), Task.waiting_on <= 0],
        values={"waiting_on": 0, "run_after": now},
        now=now,
    )


def ids_in(tree: Any) -> list[str]:
    """The task ids of a ``pipe_from`` tree."""
    if isinstance(tree, str):
        return [tree]
    return [task_id for member in tree for task_id in ids_in(member)]


def assemble(tree: Any, results: dict[str, Any]) -> Any:
    """The value a ``pipe_from`` tree stands for: a task's result, or a list of values."""
    if isinstance(tree, str):
        return results.get(tree)
    return [assemble(member, results) for member in tree]


def _after_stopped(conn: Connection, stopped: Sequence[Any], now: datetime) -> None:
    """Steps failed or were cancelled: every step after them is cancelled, and their
    workflows fail (are cancelled) unless they already ended."""
    cancel_after(conn, [row.id for row in stopped], now)
    by_workflow: dict[str, Any] = {}
    for row in stopped:
        first = by_workflow.get(row.workflow_id)
        if first is None or (row.status == FAILED and first.status != FAILED):
            by_workflow[row.workflow_id] = row
    for workflow_id, row in sorted(by_workflow.items()):
        verb = "failed" if row.status == FAILED else "was cancelled"
        error = f"step {row.id} ({row.type}) {verb}" + (f": {row.error}" if row.error else "")
        conn.execute(
            update(Workflow)
            .where(Workflow.id == workflow_id, Workflow.status == RUNNING_WORKFLOW)
            .values(status=row.status, error=error, completed_at=now, updated_at=now)
        )


def cancel_after(conn: Connection, stopped: Sequence[str], now: datetime) -> list[str]:
    """Cancel the pending steps that wait on ``stopped``, directly or through others."""
    after: set[str] = set()
    frontier = list(stopped)
    while frontier:
        found = conn.execute(
            select(WorkflowEdge.after_id).where(WorkflowEdge.before_id.in_(frontier))
        ).scalars()
        frontier = sorted(set(found) - after)
        after.update(frontier)
    if not after:
        return []
    reason = "cancelled: a step it waits on did not complete"
    return list(
        conn.execute(
            update(Task)
            .where(
                Task.id.in_(sorted(after)),
                may_become(TaskStatus.CANCELLED, {TaskStatus.PENDING}),
            )
            .values(
                status=CANCELLED,
                updated_at=now,
                cancelled_at=now,
                error=reason,
            )
            .returning(Task.id)
        ).scalars()
    )


def count_waiting(conn: Connection, workflow_id: str) -> None:
    """Set each unfinished-or-stopped step's count to the steps before it that have not
    completed (what a retry of the workflow starts from)."""
    before = Task.__table__.alias("before")
    unfinished_before = (
        select(func.count())
        .select_from(WorkflowEdge)
        .join(before, before.c.id == WorkflowEdge.before_id)
        .where(WorkflowEdge.after_id == Task.id, before.c.status != COMPLETED)
        .scalar_subquery()
    )
    conn.execute(
        update(Task)
        .where(Task.workflow_id == workflow_id, Task.status != COMPLETED)
        .values(waiting_on=unfinished_before)
    )
