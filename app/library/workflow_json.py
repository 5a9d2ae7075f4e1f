"""A workflow (``jobplane.chain``, ``jobplane.group``, ``job.s()``) as the JSON body of
``POST /api/workflows``, for ``jobplane.Client.submit_workflow``.

A step is its submission's JSON (``type``, ``params`` and the options it sets, in
camelCase), with ``pipeResult`` and its callbacks; a chain is ``{"chain": [...]}``, a
group ``{"group": [...], "then": ...}``. What the API cannot take is refused here,
naming the step as the API would (``workflow.chain[1]: …``): a step's delay (a step
starts when the steps before it completed) and a callback's own callbacks.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from jobplane.domain import InvalidParams
from jobplane.library.workflows import Chain, Group, Node, Step
from jobplane.service import Submission

#: Submission fields and their names in the API's JSON, when they are set.
_OPTIONS = (
    ("queue", "queue"),
    ("priority", "priority"),
    ("max_retries", "maxRetries"),
    ("timeout_seconds", "timeoutSeconds"),
)


def workflow_body(workflow: Node | Mapping[str, Any]) -> dict[str, Any]:
    """The JSON body for ``workflow``: a tree of nodes, or a mapping taken as the body
    itself. A lone step is sent as a chain of one."""
    if isinstance(workflow, Mapping):
        return dict(workflow)
    if isinstance(workflow, Step):
        workflow = Chain((workflow,))
    return node_json(workflow, "workflow")


def node_json(node: Node, path: str) -> dict[str, Any]:
    """``node`` (found at ``path``) as JSON."""
    if isinstance(node, Step):
        return _step_json(node, path)
    if isinstance(node, Chain):
        return {"chain": [node_json(m, f"{path}.chain[{i}]") for i, m in enumerate(node.members)]}
    if isinstance(node, Group):
        body: dict[str, Any] = {
            "group": [node_json(m, f"{path}.group[{i}]") for i, m in enumerate(node.members)]
        }
        if node.after is not None:
            body["then"] = node_json(node.after, f"{path}.then")
        return body
    raise InvalidParams(f"{path}: a workflow is made of steps, chains and groups, not {node!r:.60}")


def _step_json(step: Step, path: str) -> dict[str, Any]:
    submission = step.submission
    if submission.delay_seconds:
        raise InvalidParams(
            f"{path}: a step starts once the steps before it completed; it takes no delay"
        )
    body = _submission_json(submission)
    if step.pipe_result:
        body["pipeResult"] = True
    callbacks = (("onSuccess", submission.on_success), ("onFailure", submission.on_failure))
    for key, callback in callbacks:
        if callback is None:
            continue
        if callback.on_success or callback.on_failure or callback.delay_seconds:
            raise InvalidParams(
                f"{path}.{key}: a callback has no delay and no callbacks of its own"
            )
        body[key] = _submission_json(callback)
    return body


def _submission_json(submission: Submission) -> dict[str, Any]:
    body: dict[str, Any] = {"type": submission.type, "params": dict(submission.params)}
    for name, key in _OPTIONS:
        value = getattr(submission, name)
        if value is not None:
            body[key] = value
    return body
