"""The workflow and callback schemas of the OpenAPI document, as exact as a schema can be.

``POST /api/workflows`` reads its body itself (``jobplane.api.workflows``), so its
schema is added here: ``SubmitWorkflow``, a chain or a group whose members
(``WorkflowMember``) are steps or chains and groups (``NestedNode``), whose own members
are only said to be objects. A tree that refers to itself would be exact, but a
generator of examples (schemathesis) takes minutes over one; two levels show every
kind of node. As ``SubmitTask`` (``jobplane.api.openapi_submissions``), a step is one
variant per registered job type. A callback (``onSuccess``, ``onFailure``) is one
variant per job type that can take the params jobplane adds to it (``task_id`` and
``result`` or ``error``), without them in its own.

What no schema here says: a step that takes a result (``pipeResult``) needs a step
before it, and its own params must not set ``result``; the nesting depth (at most
``MAX_NESTING`` levels) and the number of steps (``MAX_STEPS``). The descriptions say
so, and the API answers 422 for each.
"""

from __future__ import annotations

from typing import Any

from pydantic import TypeAdapter

from jobplane.api.openapi_submissions import QUEUE_PATTERN, string_branch, variant
from jobplane.api.stats import JobType
from jobplane.api.workflow_schemas import MAX_NESTING, SubmitStep
from jobplane.library.workflows import MAX_STEPS, RESULT_PARAM
from jobplane.service import CALLBACK_PARAMS

REF = "#/components/schemas/{model}"
#: The callback components, by the event whose added params they must take.
CALLBACKS = {"SuccessCallback": "onSuccess", "FailureCallback": "onFailure"}
NESTED = {"$ref": REF.format(model="NestedNode")}
MEMBER = {"$ref": REF.format(model="WorkflowMember")}
WORKFLOW_DESCRIPTION = (
    "A workflow: a chain (`chain`: members one after the other) or a group (`group`: "
    "members side by side, `then`: a member after them all), whose members are steps, "
    f"chains and groups; nested at most {MAX_NESTING} levels, at most {MAX_STEPS} steps."
)


def describe_workflows(document: dict[str, Any], job_types: list[JobType]) -> None:
    """Add ``SubmitWorkflow`` and its parts to ``document``; narrow steps and callbacks
    to the registered job types."""
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    step = TypeAdapter(SubmitStep).json_schema(ref_template=REF)
    for name, schema in step.pop("$defs", {}).items():
        schemas.setdefault(name, schema)
    for schema in (step, *(schemas[name] for name in CALLBACKS)):
        string_branch(schema["properties"]["queue"])["pattern"] = QUEUE_PATTERN
    schemas["SubmitStep"] = step
    if job_types:  # with none registered, every workflow is refused anyway
        schemas["SubmitStep"] = {
            "title": "SubmitStep",
            "description": "A step: a job to run, one of the registered job types.",
            "oneOf": [_step_variant(step, job) for job in job_types],
        }
    schemas.update(_tree())
    for name, event in CALLBACKS.items():
        schemas[name] = _callback(schemas[name], name, CALLBACK_PARAMS[event], job_types)


def _tree() -> dict[str, Any]:
    """The workflow's nodes, two levels of them (see the module's docstring): a member
    of a nested chain or group is only said to be an object, which the API validates
    as a node like the others."""
    deeper = {
        "type": "object",
        "description": "a step, chain or group, as above (nested at most "
        f"{MAX_NESTING} levels in all)",
    }
    return {
        "SubmitWorkflow": {
            "title": "SubmitWorkflow",
            "description": WORKFLOW_DESCRIPTION,
            "oneOf": [_chain(MEMBER), _group(MEMBER)],
        },
        "WorkflowMember": {
            "title": "WorkflowMember",
            "description": "A member of a chain or group: a step, or a chain or group",
            "oneOf": [{"$ref": REF.format(model="SubmitStep")}, NESTED],
        },
        "NestedNode": {
            "title": "NestedNode",
            "description": "A chain or group inside a chain or group",
            "oneOf": [_chain(deeper), _group(deeper)],
        },
    }


def _chain(member: dict[str, Any]) -> dict[str, Any]:
    return {
        "title": "Chain",
        "description": "members that run one after the other",
        "type": "object",
        "properties": {"chain": {"type": "array", "items": member, "minItems": 1}},
        "required": ["chain"],
        "additionalProperties": False,
    }


def _group(member: dict[str, Any]) -> dict[str, Any]:
    return {
        "title": "Group",
        "description": "members that run side by side; `then` once they all completed, "
        "with their results in order",
        "type": "object",
        "properties": {
            "group": {"type": "array", "items": member, "minItems": 1},
            "then": {"anyOf": [member, {"type": "null"}]},
        },
        "required": ["group"],
        "additionalProperties": False,
    }


def _step_variant(step: dict[str, Any], job: JobType) -> dict[str, Any]:
    """A step of ``job``: a result is only given to a job that can take it."""
    described = variant(step, job)
    if not _takes(job, [RESULT_PARAM]):
        described["properties"]["pipeResult"] = {
            "const": False,
            "description": f"{job.name} takes no {RESULT_PARAM!r} param, so no result",
        }
    return described


def _callback(
    schema: dict[str, Any], name: str, added: tuple[str, ...], job_types: list[JobType]
) -> dict[str, Any]:
    """``schema`` narrowed to the job types that take the ``added`` params."""
    fitting = [job for job in job_types if _takes(job, added)]
    if not fitting:
        return {"title": name, "description": "no registered job type can be one", "not": {}}
    variants = []
    for job in fitting:
        described = variant(schema, job)
        params = described["properties"]["params"]
        for param in added:
            params["properties"].pop(param, None)
        if "required" in params:
            params["required"] = [p for p in params["required"] if p not in added]
            if not params["required"]:
                del params["required"]
                described["required"] = ["type"]
        if job.accepts_any_params:
            params["propertyNames"] = {"not": {"enum": list(added)}}
        described["examples"] = [
            {**example, "params": {k: v for k, v in example["params"].items() if k not in added}}
            for example in described["examples"]
        ]
        variants.append(described)
    description = (schema.get("description") or name).strip()
    return {"title": name, "description": description, "oneOf": variants}


def _takes(job: JobType, names: tuple[str, ...] | list[str]) -> bool:
    """Whether ``job`` accepts every one of ``names`` as a keyword argument."""
    own = {param.name for param in job.params}
    return job.accepts_any_params or all(name in own for name in names)
