"""The submission schema of the OpenAPI document, as exact as the service's checks.

FastAPI describes ``SubmitTask`` from its fields: any string as ``type``, any object
as ``params``, any string as ``queue``. The service accepts less: a registered job
type, params that bind to that job's signature by name, a queue name Dramatiq accepts,
an ``Idempotency-Key`` that is not only whitespace. Said in the document, a client (or
schemathesis) can tell from it alone which submissions are accepted: ``SubmitTask``
becomes one variant per job type, with an example each. ``GET /api/admin/job-types``
gives the same facts at run time.

The values inside ``params`` stay unconstrained: the API checks their names, never
their types (a job's annotations are not validated before it runs).
"""

from __future__ import annotations

import copy
from typing import Any

from jobplane.api.stats import JobType
from jobplane.service import MAX_PARAMS_BYTES, QUEUE_NAME
from jobplane.stored_json import MAX_DEPTH

#: The queue a submission may name: empty (or null) for the job's own, or a Dramatiq name.
QUEUE_PATTERN = f"^$|{QUEUE_NAME.pattern}"
#: A key holds at least one character that Python's ``str.strip`` keeps (whitespace in
#: the Latin-1 range a header value has).
KEY_PATTERN = r"[^\t-\r\x1c-\x20\x85\xa0]"
KEY_HEADER = "idempotency-key"
#: What the params' schema cannot say about the values in them.
PARAMS_DESCRIPTION = (
    "keyword arguments of the job: JSON that reads back as written (no NaN or ±Infinity, "
    f"no NUL character, no lone surrogate, nested at most {MAX_DEPTH} levels), at most "
    f"{MAX_PARAMS_BYTES // 1024} KiB once encoded"
)


def describe_submissions(document: dict[str, Any], job_types: list[JobType]) -> None:
    """Narrow ``document``'s ``SubmitTask`` and ``Idempotency-Key`` to what is accepted."""
    schemas = document.get("components", {}).get("schemas", {})
    submit = schemas.get("SubmitTask")
    if submit is not None:
        string_branch(submit["properties"]["queue"])["pattern"] = QUEUE_PATTERN
        if job_types:  # with none registered, every submission is refused anyway
            schemas["SubmitTask"] = {
                "title": submit.get("title", "SubmitTask"),
                "description": "A job to run: one of the registered job types.",
                "oneOf": [variant(submit, job) for job in job_types],
            }
    for operations in document.get("paths", {}).values():
        for operation in operations.values():
            for parameter in operation.get("parameters", []):
                if parameter["in"] == "header" and parameter["name"] == KEY_HEADER:
                    string_branch(parameter["schema"])["pattern"] = KEY_PATTERN


def variant(submit: dict[str, Any], job: JobType) -> dict[str, Any]:
    """``submit`` for one job type: its name as ``type``, its keyword arguments as ``params``."""
    variant = copy.deepcopy(submit)
    variant["title"] = job.name
    variant["description"] = (job.description or job.name).splitlines()[0]
    properties = variant["properties"]
    properties["type"] = {"const": job.name, "description": "the job type"}
    properties["params"] = {
        "type": "object",
        "description": PARAMS_DESCRIPTION,
        "properties": {param.name: _param(param.default) for param in job.params},
        "additionalProperties": job.accepts_any_params,
    }
    required = [param.name for param in job.params if param.required]
    if required:
        properties["params"]["required"] = required
        variant["required"] = ["type", "params"]
    example_params = {param.name: param.default for param in job.params}
    variant["examples"] = [{"type": job.name, "params": example_params}]
    return variant


def _param(default: Any) -> dict[str, Any]:
    return {} if default is None else {"default": default}


def string_branch(schema: dict[str, Any]) -> dict[str, Any]:
    """The ``type: string`` part of ``schema`` (FastAPI writes ``str | None`` as anyOf)."""
    branch: dict[str, Any]
    for branch in schema.get("anyOf", [schema]):
        if branch.get("type") == "string":
            return branch
    raise ValueError(f"no string in schema {schema!r}")
