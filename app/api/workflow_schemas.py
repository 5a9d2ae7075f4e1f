"""The bodies of the workflow routes: a workflow as submitted, and as the API answers it.

A submitted workflow is a tree (``jobplane.library.workflows``): a node is a step
(``{"type": …}``), a chain (``{"chain": [node, …]}``) or a group (``{"group": [node,
…], "then": node}``). ``to_node`` turns the validated body into the library's nodes,
which ``jobplane.library.workflows.submit`` plans and writes.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import Discriminator, Field, Tag

from jobplane.api.schemas import Camel, JobWithCallbacks, TaskSummary
from jobplane.domain import TaskStatus, WorkflowStatus
from jobplane.library import workflows
from jobplane.store.rows import TaskRow
from jobplane.store.workflows import WorkflowRow
from jobplane.stored_json import MAX_DEPTH

#: Deepest nesting of chains and groups in a submitted workflow: the workflow itself
#: is level 1, a chain in it level 2, and so on (a step adds no level).
MAX_NESTING = MAX_DEPTH


class SubmitStep(JobWithCallbacks):
    """One step of a workflow: a job to run, as ``POST /api/tasks`` takes it."""

    pipe_result: bool = Field(
        False,
        strict=True,
        description="give the step the result of what ran before it as its `result` param "
        "(a step's result; a group's, the list of its members' results)",
    )

    def to_node(self) -> workflows.Step:
        return workflows.Step(self.submission_with_callbacks(), pipe_result=self.pipe_result)


class SubmitChain(Camel):
    """Members that run one after the other."""

    chain: list[WorkflowNode] = Field(min_length=1)

    def to_node(self) -> workflows.Chain:
        return workflows.Chain(tuple(member.to_node() for member in self.chain))


class SubmitGroup(Camel):
    """Members that run side by side; ``then`` once they all completed."""

    group: list[WorkflowNode] = Field(min_length=1)
    then: WorkflowNode | None = Field(
        None, description="runs once every member completed; takes their results in order"
    )

    def to_node(self) -> workflows.Group:
        after = self.then.to_node() if self.then is not None else None
        return workflows.Group(tuple(member.to_node() for member in self.group), after)


def node_kind(value: Any) -> str:
    """Which kind of node ``value`` is, by its keys: a chain, a group, else a step."""
    keys = value if isinstance(value, dict) else getattr(type(value), "model_fields", {})
    if "chain" in keys:
        return "chain"
    if "group" in keys:
        return "group"
    return "step"


WorkflowNode = Annotated[
    Annotated[SubmitStep, Tag("step")]
    | Annotated[SubmitChain, Tag("chain")]
    | Annotated[SubmitGroup, Tag("group")],
    Discriminator(node_kind),
]
#: What ``POST /api/workflows`` takes: a chain or a group at the top.
SubmitWorkflow = Annotated[
    Annotated[SubmitChain, Tag("chain")] | Annotated[SubmitGroup, Tag("group")],
    Discriminator(node_kind),
]
#: Names of the node kinds, as they appear in a validation error's location.
NODE_TAGS = frozenset({"step", "chain", "group"})


class WorkflowStep(TaskSummary):
    """A step of a workflow: its task, as the admin list shows it, and how many steps
    before it have yet to complete."""

    waiting_on: int = Field(description="steps before it that have not completed yet")

    @classmethod
    def from_step(cls, task: TaskRow) -> WorkflowStep:
        summary = TaskSummary.from_task(task).model_dump()
        return cls.model_validate({**summary, "waiting_on": max(task.waiting_on, 0)})


class WorkflowSummary(Camel):
    """A workflow as the admin list shows it."""

    workflow_id: str
    status: WorkflowStatus
    step_count: int
    steps_by_status: dict[str, int] = Field(description="how many steps are in each status")
    percent: int = Field(description="completed steps, in whole percent of all steps")
    error: str | None = Field(description="why it failed or was cancelled: the step that did")
    created_at: datetime
    updated_at: datetime
    completed_at: datetime | None

    @classmethod
    def from_workflow(cls, workflow: WorkflowRow) -> WorkflowSummary:
        return cls.model_validate(_summary(workflow))


class WorkflowDetail(WorkflowSummary):
    """Everything about one workflow: its shape, its steps in order, its result."""

    shape: Any = Field(
        description="the tree as submitted, each step its task id: a chain "
        '`{"chain": [...]}`, a group `{"group": [...], "then": ...}`, a step its id'
    )
    result: Any = Field(
        None,
        description="once completed: its last step's result (a chain's), or the list of "
        "its members' (a group's)",
    )
    steps: list[WorkflowStep] = Field(description="every step, in the order of the shape")

    @classmethod
    def from_workflow_steps(
        cls, workflow: WorkflowRow, steps: list[TaskRow], result: Any
    ) -> WorkflowDetail:
        return cls.model_validate(
            {
                **_summary(workflow),
                "shape": workflow.shape,
                "result": result,
                "steps": [WorkflowStep.from_step(step) for step in steps],
            }
        )


def _summary(workflow: WorkflowRow) -> dict[str, object]:
    by_status = dict.fromkeys((status.value for status in TaskStatus), 0)
    by_status.update(workflow.step_counts)
    done = workflow.completed_steps * 100 // workflow.steps if workflow.steps else 0
    return {
        "workflow_id": workflow.id,
        "status": workflow.status,
        "step_count": workflow.steps,
        "steps_by_status": by_status,
        "percent": done,
        "error": workflow.error,
        "created_at": workflow.created_at,
        "updated_at": workflow.updated_at,
        "completed_at": workflow.completed_at,
    }


class WorkflowPage(Camel):
    workflows: list[WorkflowSummary]
    total: int = Field(description="how many workflows match the filter")
    page: int
    page_size: int
