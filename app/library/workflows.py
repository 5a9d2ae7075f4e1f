"""Workflows: steps that run in an order, every step a task row (``jobplane.chain``,
``jobplane.group``, ``job.s()``).

A workflow is a tree of three shapes, nested as deep as needed:
- ``Step``: one task (a submission), optionally taking the result of what ran before it
  (``pipe_result``) as its ``result`` param;
- ``Chain``: its members one after the other; each starts once the one before it
  completed;
- ``Group``: its members side by side; with ``then``, a member after the group that
  starts once every member completed, with their results in the members' order.

``plan`` turns the tree into what the store writes in one transaction: a task row per
step (those that wait on others pending with no outbox row yet, ``waiting_on``), the
edges between them and the workflow's shape; ``jobplane.store.followups`` moves it on
as steps end. What a step "takes" (``pipe_result``): the result of a step is its
result; of a chain, its last member's; of a group, the list of its members' (of a group
with ``then``, the ``then`` member's).
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.exc import IntegrityError

from jobplane import store
from jobplane.db import jobplane_schema
from jobplane.domain import (
    IdempotencyConflict,
    InvalidParams,
    JobplaneError,
    ParamsTooLarge,
    UnknownJobType,
)
from jobplane.library.engine import default_engine, library_settings
from jobplane.library.workflow_handles import WorkflowHandle
from jobplane.models import utcnow
from jobplane.service import Submission, build_task, check_idempotency_key
from jobplane.settings import Settings
from jobplane.store.rows import TaskRow

#: Most steps in one workflow.
MAX_STEPS = 10_000
#: Most edges in one workflow (a group after a group has one per pair of members).
MAX_EDGES = 100_000
#: The param a step that takes the result before it gets it in.
RESULT_PARAM = "result"


class _Startable:
    """``.delay()``: start the workflow now, in a transaction of its own."""

    def delay(self, *, idempotency_key: str | None = None) -> WorkflowHandle:
        """Write the workflow now, in a short transaction of its own (on
        ``JOBPLANE_DATABASE_URL``); a handle to it. With an ``idempotency_key`` used
        before for the same workflow, a handle to that one (as ``submit``)."""
        assert isinstance(self, Step | Chain | Group)
        settings = library_settings()
        engine = default_engine()
        with engine.begin() as conn, jobplane_schema(conn, settings.db_schema):
            submitted = submit(
                conn,
                self,
                settings,
                utcnow(),
                registered_only=False,
                idempotency_key=idempotency_key,
            )
        return WorkflowHandle(submitted.workflow_id, engine=engine)


@dataclass(frozen=True)
class Step(_Startable):
    """One task of a workflow: ``job.s(**params)``, or ``Step(Submission(...))``."""

    submission: Submission
    #: Whether the step gets the result of what ran before it, as its ``result`` param.
    pipe_result: bool = False

    def set(
        self,
        *,
        queue: str | None = None,
        priority: int | None = None,
        max_retries: int | None = None,
        timeout: int | None = None,
        pipe_result: bool | None = None,
    ) -> Step:
        """This step with other options (those not given are kept)."""
        changes: dict[str, Any] = {
            "queue": queue,
            "priority": priority,
            "max_retries": max_retries,
            "timeout_seconds": timeout,
        }
        submission = replace(self.submission, **{k: v for k, v in changes.items() if v is not None})
        piped = self.pipe_result if pipe_result is None else pipe_result
        return Step(submission, piped)

    def then(self, *after: Node) -> Chain:
        """A chain: this step, then ``after``."""
        return Chain((self, *after))


@dataclass(frozen=True)
class Chain(_Startable):
    """Members run one after the other."""

    members: tuple[Node, ...]

    def then(self, *after: Node) -> Chain:
        return Chain((*self.members, *after))


@dataclass(frozen=True)
class Group(_Startable):
    """Members run side by side; ``after`` (``.then``) once they all completed."""

    members: tuple[Node, ...]
    after: Node | None = field(default=None)

    def then(self, *after: Node) -> Group | Chain:
        """The group with a member after it (a chord), or, if it has one, a chain."""
        if self.after is None and len(after) == 1:
            return Group(self.members, after[0])
        return Chain((self, *after))


Node = Step | Chain | Group


def chain(*members: Node | Iterable[Node]) -> Chain:
    """``chain(a.s(), b.s(), c.s())``: each member starts once the one before completed."""
    return Chain(_flat(members))


def group(*members: Node | Iterable[Node]) -> Group:
    """``group(a.s(x=1), a.s(x=2))`` or ``group(a.s(x=i) for i in …)``: side by side."""
    return Group(_flat(members))


def _flat(members: tuple[Node | Iterable[Node], ...]) -> tuple[Node, ...]:
    flat: list[Node] = []
    for member in members:
        if isinstance(member, Step | Chain | Group):
            flat.append(member)
        else:
            flat.extend(member)
    return tuple(flat)


@dataclass(frozen=True)
class WorkflowPlan:
    """What one workflow writes: its steps' rows, the edges (step before, step after),
    its shape (the tree, each step its task id) and how many ends it has."""

    workflow_id: str
    tasks: list[TaskRow]
    edges: list[tuple[str, str]]
    shape: Any
    ends: int


#: A planned member: its last steps, its result's tree, its shape.
_Planned = tuple[list[str], Any, Any]
#: What comes before the first steps: nothing to take the result of.
_NOTHING = object()


def plan(
    node: Node, settings: Settings, now: datetime, *, registered_only: bool = True
) -> WorkflowPlan:
    """The rows of a workflow, or a ``JobplaneError`` naming the step that is wrong
    (``chain[1].group[0]``: the second member of the chain, the group's first)."""
    planner = _Planner(settings, now, registered_only, str(uuid.uuid4()))
    ends, _, shape = planner.node(node, [], _NOTHING, "workflow")
    return WorkflowPlan(planner.workflow_id, planner.tasks, planner.edges, shape, len(ends))


@dataclass
class _Planner:
    settings: Settings
    now: datetime
    registered_only: bool
    workflow_id: str
    tasks: list[TaskRow] = field(default_factory=list)
    edges: list[tuple[str, str]] = field(default_factory=list)

    def node(
        self, node: Node, before: list[str], taken: Any, path: str
    ) -> tuple[list[str], Any, Any]:
        """Plan ``node`` after the steps ``before``; ``taken`` is what a member that
        takes the result before it gets. Returns its last steps, its result's tree
        and its shape."""
        if isinstance(node, Step):
            return self.step(node, before, taken, path)
        if not node.members:
            kind = "chain" if isinstance(node, Chain) else "group"
            raise InvalidParams(f"{path}: a {kind} needs at least one member")
        if isinstance(node, Chain):
            shapes = []
            for place, member in enumerate(node.members):
                before, taken, shape = self.node(member, before, taken, f"{path}.chain[{place}]")
                shapes.append(shape)
            return before, taken, {"chain": shapes}
        ends: list[str] = []
        results, shapes = [], []
        for place, member in enumerate(node.members):
            member_ends, result, shape = self.node(member, before, taken, f"{path}.group[{place}]")
            ends += member_ends
            results.append(result)
            shapes.append(shape)
        if node.after is None:
            return ends, results, {"group": shapes}
        ends, result, after = self.node(node.after, ends, results, f"{path}.then")
        return ends, result, {"group": shapes, "then": after}

    def step(
        self, step: Step, before: list[str], taken: Any, path: str
    ) -> tuple[list[str], Any, Any]:
        if step.pipe_result:
            if taken is _NOTHING:
                raise InvalidParams(f"{path}: pipeResult, but no step runs before it")
            if RESULT_PARAM in step.submission.params:
                raise InvalidParams(
                    f"{path}: pipeResult sets the {RESULT_PARAM!r} param, which its params set too"
                )
        try:
            row = build_task(
                self._probe(step), self.settings, self.now, registered_only=self.registered_only
            )
        except UnknownJobType as error:
            message = f"{path}: {error.message}"
            raise UnknownJobType(step.submission.type, error.known, message=message) from None
        except (InvalidParams, ParamsTooLarge) as error:
            raise type(error)(f"{path}: {error.message}") from None
        row = replace(
            row,
            params=step.submission.params,
            workflow_id=self.workflow_id,
            waiting_on=len(before),
            pipe_from=taken if step.pipe_result else None,
        )
        if len(self.tasks) >= MAX_STEPS:
            raise InvalidParams(f"a workflow has at most {MAX_STEPS} steps")
        self.tasks.append(row)
        self.edges += [(task_id, row.id) for task_id in before]
        if len(self.edges) > MAX_EDGES:
            raise InvalidParams(
                f"a workflow has at most {MAX_EDGES} edges between steps "
                "(a group after a group has one per pair of their members): "
                "put a step between the groups"
            )
        return [row.id], row.id, row.id

    def _probe(self, step: Step) -> Submission:
        """The step's submission as its params will be when it runs, to check them
        against the job's signature (a step that takes a result may require it)."""
        if not step.pipe_result:
            return step.submission
        return replace(step.submission, params={**step.submission.params, RESULT_PARAM: None})


def fingerprint(node: Node) -> str:
    """A digest of the workflow as submitted, to tell a repeated submission under an
    idempotency key from another workflow: its shape, and each step's submission
    (``Submission.fingerprint``) and whether it takes a result. Trees built alike have
    the same one; a different order, nesting, step or option gives another."""
    canonical = json.dumps(_described(node), separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def _described(node: Node) -> Any:
    if isinstance(node, Step):
        return {"step": node.submission.fingerprint(), "pipeResult": node.pipe_result}
    members = [_described(member) for member in node.members]
    if isinstance(node, Chain):
        return {"chain": members}
    return {"group": members, "then": None if node.after is None else _described(node.after)}


@dataclass(frozen=True)
class SubmittedWorkflow:
    """What ``submit`` did: the workflow's id, and whether this call wrote it."""

    workflow_id: str
    #: False when the idempotency key named a workflow written before: nothing was written.
    created: bool
    #: What this call wrote; None when it wrote nothing.
    plan: WorkflowPlan | None


def submit(
    conn: Connection,
    node: Node,
    settings: Settings,
    now: datetime,
    *,
    registered_only: bool = True,
    idempotency_key: str | None = None,
) -> SubmittedWorkflow:
    """Write a workflow in the caller's transaction; its id and plan.

    With an ``idempotency_key`` (1 to 200 characters, not only whitespace, else
    ``InvalidParams``) already used for the same workflow (``fingerprint``), writes
    nothing and answers that workflow, not created; used for another workflow, raises
    ``IdempotencyConflict`` naming it. Of concurrent submissions under one key, one
    writes the workflow and the others answer it. Everything is checked first: a
    workflow that is wrong is refused, with or without a key.
    """
    if idempotency_key is not None:
        check_idempotency_key(idempotency_key)
    planned = plan(node, settings, now, registered_only=registered_only)
    if idempotency_key is None:
        _write(conn, planned, now)
        return SubmittedWorkflow(planned.workflow_id, True, planned)
    request_hash = fingerprint(node)
    existing = store.workflows.find_by_idempotency_key(conn, idempotency_key)
    if existing is None:
        try:
            with conn.begin_nested():
                _write(conn, planned, now, idempotency_key, request_hash)
            return SubmittedWorkflow(planned.workflow_id, True, planned)
        except IntegrityError:
            # A concurrent submission with the same key committed first.
            existing = store.workflows.find_by_idempotency_key(conn, idempotency_key)
            if existing is None:
                raise
    if existing.request_hash != request_hash:
        raise IdempotencyConflict(
            "this Idempotency-Key was already used for a different workflow "
            f"(workflow {existing.id})",
            workflow_id=existing.id,
        )
    return SubmittedWorkflow(existing.id, False, None)


def _write(
    conn: Connection,
    planned: WorkflowPlan,
    now: datetime,
    idempotency_key: str | None = None,
    request_hash: str | None = None,
) -> None:
    store.workflows.insert_workflow(
        conn,
        workflow_id=planned.workflow_id,
        shape=planned.shape,
        tasks=planned.tasks,
        edges=planned.edges,
        ends=planned.ends,
        now=now,
        idempotency_key=idempotency_key,
        request_hash=request_hash,
    )


__all__ = [
    "MAX_EDGES",
    "MAX_STEPS",
    "Chain",
    "Group",
    "JobplaneError",
    "Node",
    "WorkflowHandle",
    "Step",
    "SubmittedWorkflow",
    "WorkflowPlan",
    "chain",
    "fingerprint",
    "group",
    "plan",
    "submit",
]
