"""The task service: turning a submission into a task row and its outbox row.

Validation happens here, once, for the API and the CLI alike; the insert itself is
``store.tasks.insert_tasks`` inside the caller's transaction.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import re
import uuid
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Row
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from jobplane import registry, store
from jobplane.domain import (
    IdempotencyConflict,
    InvalidParams,
    JobplaneError,
    ParamsTooLarge,
    TaskStatus,
)
from jobplane.settings import Settings

MAX_PARAMS_BYTES = 64 * 1024  #: largest ``params`` accepted, JSON-encoded
MAX_BATCH = 1000  #: most submissions in one batch
QUEUE_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9._-]{0,99}$")  # what Dramatiq accepts


@dataclass(frozen=True)
class Submission:
    """What a client asks for; None means the job type's default."""

    type: str
    params: dict[str, Any] = field(default_factory=dict)
    queue: str | None = None
    priority: int | None = None
    delay_seconds: float = 0
    max_retries: int | None = None
    timeout_seconds: int | None = None

    def fingerprint(self) -> str:
        """A digest of the submission, to tell a repeated request from a different one."""
        canonical = json.dumps(asdict(self), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()


#: Columns a new task starts without: with them, a built task is the whole row.
UNSET_COLUMNS: dict[str, Any] = dict.fromkeys(
    (
        "result",
        "error",
        "heartbeat_at",
        "worker",
        "started_at",
        "completed_at",
        "cancelled_at",
        "schedule_name",
        "fire_time",
        "waiting_since",
    )
)


def new_task_id() -> str:
    return str(uuid.uuid4())


def build_task(
    submission: Submission,
    settings: Settings,
    now: datetime,
    *,
    idempotency_key: str | None = None,
) -> dict[str, Any]:
    """The row of a new pending task, or a ``JobplaneError`` saying what is wrong."""
    spec = registry.get_job(submission.type)
    _check_params(spec, submission.params)
    queue = submission.queue or spec.queue
    if not QUEUE_NAME.match(queue):
        raise InvalidParams(f"invalid queue name {queue!r}: use letters, digits, '.', '_', '-'")
    if submission.delay_seconds < 0:
        raise InvalidParams("delaySeconds must not be negative")
    return {
        "id": new_task_id(),
        "type": spec.name,
        "queue": queue,
        "priority": _pick(submission.priority, spec.priority, 0),
        "params": submission.params,
        "status": TaskStatus.PENDING.value,
        "progress": 0,
        "total": 0,
        "attempts": 0,
        "retry_count": 0,
        "max_retries": _pick(
            submission.max_retries, spec.max_retries, settings.default_max_retries
        ),
        "timeout_seconds": _pick(
            submission.timeout_seconds, spec.timeout, settings.default_timeout
        ),
        "run_after": now + timedelta(seconds=submission.delay_seconds),
        "dispatch": 1,
        "cancel_requested": False,
        "created_at": now,
        "idempotency_key": idempotency_key,
        "request_hash": submission.fingerprint() if idempotency_key is not None else None,
        **UNSET_COLUMNS,
    }


def submit(
    conn: Connection,
    submission: Submission,
    settings: Settings,
    now: datetime,
    *,
    idempotency_key: str | None = None,
) -> tuple[Mapping[str, Any], bool]:
    """Write one task and its outbox row; returns the task's row and whether it is new.

    With an ``idempotency_key`` already used for the same submission, returns that
    task unchanged; used for another submission, raises ``IdempotencyConflict``.
    """
    task = build_task(submission, settings, now, idempotency_key=idempotency_key)
    if idempotency_key is not None:
        existing = store.tasks.find_by_idempotency_key(conn, idempotency_key)
        if existing is not None:
            return _same_submission(existing, task)._asdict(), False
        try:
            with conn.begin_nested():
                store.tasks.insert_tasks(conn, [task])
        except IntegrityError:
            # A concurrent request with the same key committed first.
            existing = store.tasks.find_by_idempotency_key(conn, idempotency_key)
            if existing is None:
                raise
            return _same_submission(existing, task)._asdict(), False
    else:
        store.tasks.insert_tasks(conn, [task])
    return task, True


def write_new_tasks(conn: Connection, tasks: list[dict[str, Any]]) -> list[None]:
    """Insert tasks built by ``build_task`` (for ``GroupCommit``: one result per task)."""
    store.tasks.insert_tasks(conn, tasks)
    return [None] * len(tasks)


async def write_new_tasks_async(conn: AsyncConnection, tasks: list[dict[str, Any]]) -> list[None]:
    """``write_new_tasks`` for ``AsyncGroupCommit`` (PostgreSQL)."""
    await store.tasks.insert_tasks_async(conn, tasks)
    return [None] * len(tasks)


def submit_batch(
    conn: Connection, submissions: list[Submission], settings: Settings, now: datetime
) -> list[str]:
    """Write up to ``MAX_BATCH`` tasks in the caller's transaction; their ids in order."""
    if not submissions:
        raise InvalidParams("a batch needs at least one submission")
    if len(submissions) > MAX_BATCH:
        raise InvalidParams(f"a batch holds at most {MAX_BATCH} submissions")
    tasks = []
    for index, submission in enumerate(submissions):
        try:
            tasks.append(build_task(submission, settings, now))
        except JobplaneError as error:
            error.message = f"tasks[{index}]: {error.message}"
            raise
    store.tasks.insert_tasks(conn, tasks)
    return [task["id"] for task in tasks]


def _same_submission(existing: Row[Any], task: dict[str, Any]) -> Row[Any]:
    if existing.request_hash != task["request_hash"]:
        raise IdempotencyConflict(
            "this Idempotency-Key was already used for a different submission "
            f"(task {existing.id})",
            task_id=existing.id,
        )
    return existing


def _check_params(spec: registry.JobSpec, params: Any) -> None:
    if not isinstance(params, dict):
        raise InvalidParams("params must be a JSON object")
    size = len(json.dumps(params, separators=(",", ":")).encode())
    if size > MAX_PARAMS_BYTES:
        raise ParamsTooLarge(
            f"params are {size} bytes once encoded; the limit is {MAX_PARAMS_BYTES}"
        )
    try:
        inspect.signature(spec.fn).bind(**params)
    except TypeError as error:
        raise InvalidParams(f"params do not fit job {spec.name!r}: {error}") from None


def _pick(*choices: int | None) -> int:
    return next(choice for choice in choices if choice is not None)
