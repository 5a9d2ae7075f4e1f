"""The task service: turning a submission into a task row and its outbox row.

Validation happens here, once, for the API and the CLI alike; the insert itself is
``store.tasks.insert_tasks`` inside the caller's transaction.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import json
import re
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from jobplane import registry, store, stored_json
from jobplane.domain import (
    MAX_RETRIES,
    IdempotencyConflict,
    InvalidParams,
    JobplaneError,
    ParamsTooLarge,
    UnknownJobType,
)
from jobplane.settings import Settings
from jobplane.store.rows import TaskRow

MAX_PARAMS_BYTES = 64 * 1024  #: largest ``params`` accepted, JSON-encoded
MAX_BATCH = 1000  #: most submissions in one batch
QUEUE_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9._-]{0,99}$")  # what Dramatiq accepts
MAX_TYPE_LENGTH = 200  #: longest job type name (its column's length)
MAX_PRIORITY = 1000  #: priorities run from -MAX_PRIORITY to MAX_PRIORITY
MAX_DELAY_SECONDS = 366 * 86400  #: latest start asked for, from now
MAX_TIMEOUT_SECONDS = 7 * 86400  #: longest time limit of one attempt
MAX_IDEMPOTENCY_KEY = 200  #: longest idempotency key, in characters (its column's length)


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
    #: A task to enqueue when this one completes, or fails after its retries (None: the
    #: job type's, if it has one). Its params get ``task_id`` and ``result`` (``error``).
    on_success: Submission | None = None
    on_failure: Submission | None = None

    def fingerprint(self) -> str:
        """A digest of the submission, to tell a repeated request from a different one."""
        canonical = json.dumps(asdict(self), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()


def new_task_id() -> str:
    return str(uuid.uuid4())


def build_task(
    submission: Submission,
    settings: Settings,
    now: datetime,
    *,
    idempotency_key: str | None = None,
    registered_only: bool = True,
) -> TaskRow:
    """The row of a new pending task, or a ``JobplaneError`` saying what is wrong.

    The whole row: what the insert writes, and what the API answers with.

    ``registered_only=False`` (application code enqueueing a job its process does not
    import) accepts a type this process has not registered: its row gets the settings'
    defaults (queue ``"default"`` unless given), its params only the checks that need no
    signature, and the worker checks them against the job's signature before it runs.
    """
    spec = _spec_of(submission.type, registered_only)
    _check_params_shape(submission.params)
    if spec is not None:
        check_params_fit(spec, submission.params)
    queue = submission.queue or (spec.queue if spec else registry.DEFAULT_QUEUE)
    if not QUEUE_NAME.match(queue):
        raise InvalidParams(f"invalid queue name {queue!r}: use letters, digits, '.', '_', '-'")
    _check_bounds(submission)
    return TaskRow.new(
        id=new_task_id(),
        type=submission.type,
        queue=queue,
        priority=_pick(submission.priority, spec.priority if spec else None, 0),
        params=submission.params,
        max_retries=_pick(
            submission.max_retries, spec.max_retries if spec else None, settings.default_max_retries
        ),
        timeout_seconds=_pick(
            submission.timeout_seconds, spec.timeout if spec else None, settings.default_timeout
        ),
        run_after=now + timedelta(seconds=submission.delay_seconds),
        now=now,
        idempotency_key=idempotency_key,
        request_hash=submission.fingerprint() if idempotency_key is not None else None,
        callbacks=_callbacks(submission, spec, settings, now, registered_only),
    )


def submit(
    conn: Connection,
    submission: Submission,
    settings: Settings,
    now: datetime,
    *,
    idempotency_key: str | None = None,
    registered_only: bool = True,
) -> tuple[TaskRow, bool]:
    """Write one task and its outbox row; returns the task's row and whether it is new.

    With an ``idempotency_key`` already used for the same submission, returns that
    task unchanged; used for another submission, raises ``IdempotencyConflict``.
    ``registered_only``: as for ``build_task``.
    """
    task = build_task(
        submission,
        settings,
        now,
        idempotency_key=idempotency_key,
        registered_only=registered_only,
    )
    if idempotency_key is not None:
        existing = store.tasks.find_by_idempotency_key(conn, idempotency_key)
        if existing is not None:
            return _same_submission(existing, task), False
        try:
            with conn.begin_nested():
                store.tasks.insert_tasks(conn, [task])
        except IntegrityError:
            # A concurrent request with the same key committed first.
            existing = store.tasks.find_by_idempotency_key(conn, idempotency_key)
            if existing is None:
                raise
            return _same_submission(existing, task), False
    else:
        store.tasks.insert_tasks(conn, [task])
    return task, True


def write_new_tasks(conn: Connection, tasks: list[TaskRow]) -> list[None]:
    """Insert tasks built by ``build_task`` (for ``GroupCommit``: one result per task)."""
    store.tasks.insert_tasks(conn, tasks)
    return [None] * len(tasks)


async def write_new_tasks_async(conn: AsyncConnection, tasks: list[TaskRow]) -> list[None]:
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
    return [task.id for task in tasks]


def _same_submission(existing: TaskRow, task: TaskRow) -> TaskRow:
    if existing.request_hash != task.request_hash:
        raise IdempotencyConflict(
            "this Idempotency-Key was already used for a different submission "
            f"(task {existing.id})",
            task_id=existing.id,
        )
    return existing


#: What a callback's params get, beside its own, by the event it follows.
CALLBACK_PARAMS = {"onSuccess": ("task_id", "result"), "onFailure": ("task_id", "error")}


def _callbacks(
    submission: Submission,
    spec: registry.JobSpec | None,
    settings: Settings,
    now: datetime,
    registered_only: bool,
) -> dict[str, Any] | None:
    """The task's callbacks as its row keeps them: each one's row, its defaults filled
    in (``TaskRow.callbacks``); None without any."""
    chosen = {
        "onSuccess": submission.on_success or _by_type(spec.on_success if spec else None),
        "onFailure": submission.on_failure or _by_type(spec.on_failure if spec else None),
    }
    kept: dict[str, Any] = {}
    for event, callback in chosen.items():
        if callback is None:
            continue
        if callback.on_success or callback.on_failure:
            raise InvalidParams(f"{event}: a callback cannot have callbacks of its own")
        added = CALLBACK_PARAMS[event]
        if clash := sorted(set(added) & set(callback.params)):
            raise InvalidParams(f"{event}: params {clash} are set by jobplane when it runs")
        # Checked with the params it will be called with: the job may require them.
        probe = replace(callback, params={**callback.params, **dict.fromkeys(added, "")})
        try:
            row = build_task(probe, settings, now, registered_only=registered_only)
        except UnknownJobType as error:
            message = f"{event}: {error.message}"
            raise UnknownJobType(callback.type, error.known, message=message) from None
        except (InvalidParams, ParamsTooLarge) as error:
            raise type(error)(f"{event}: {error.message}") from None
        kept[event] = {
            "type": row.type,
            "queue": row.queue,
            "priority": row.priority,
            "params": callback.params,
            "max_retries": row.max_retries,
            "timeout_seconds": row.timeout_seconds,
        }
    return kept or None


def _by_type(job_type: str | None) -> Submission | None:
    return None if job_type is None else Submission(type=job_type)


def check_idempotency_key(key: str) -> None:
    """``InvalidParams`` unless ``key`` is 1 to ``MAX_IDEMPOTENCY_KEY`` characters, not
    all whitespace (an empty key would be one key shared by every caller)."""
    if not isinstance(key, str) or not key.strip() or len(key) > MAX_IDEMPOTENCY_KEY:
        raise InvalidParams(
            f"an idempotency key is 1 to {MAX_IDEMPOTENCY_KEY} characters, not only "
            f"whitespace; got {key!r:.60}"
        )


def check_params_fit(spec: registry.JobSpec, params: dict[str, Any]) -> None:
    """``InvalidParams`` unless ``params`` bind to the job's signature as keywords."""
    error = _misfit(spec.fn, frozenset(params))
    if error is not None:
        raise InvalidParams(f"params do not fit job {spec.name!r}: {error}")


def _spec_of(job_type: str, registered_only: bool) -> registry.JobSpec | None:
    if registered_only:
        return registry.get_job(job_type)
    try:
        return registry.get_job(job_type)
    except UnknownJobType:
        if not isinstance(job_type, str) or not 0 < len(job_type) <= MAX_TYPE_LENGTH:
            raise InvalidParams(
                f"a job type is a name of 1 to {MAX_TYPE_LENGTH} characters, not {job_type!r:.60}"
            ) from None
        return None


def _check_params_shape(params: Any) -> None:
    if not isinstance(params, dict):
        raise InvalidParams("params must be a JSON object")
    try:
        # What reads back as it was written: no NaN, NUL, lone surrogate or deep nesting.
        size = len(stored_json.encode(params, "params"))
    except stored_json.Unstorable as error:
        raise InvalidParams(str(error)) from None
    if size > MAX_PARAMS_BYTES:
        raise ParamsTooLarge(
            f"params are {size} bytes once encoded; the limit is {MAX_PARAMS_BYTES}"
        )


def _check_bounds(submission: Submission) -> None:
    """The ranges the API's request schema also enforces, for callers without it."""
    _check_range("priority", submission.priority, -MAX_PRIORITY, MAX_PRIORITY)
    _check_range("delay", submission.delay_seconds, 0, MAX_DELAY_SECONDS)
    _check_range("max_retries", submission.max_retries, 0, MAX_RETRIES)
    _check_range("timeout", submission.timeout_seconds, 1, MAX_TIMEOUT_SECONDS)


def _check_range(name: str, value: float | None, low: float, high: float) -> None:
    if value is None:
        return
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if not number or not low <= value <= high:
        raise InvalidParams(f"{name} must be a number from {low} to {high}, not {value!r}")


@functools.lru_cache(maxsize=4096)
def _misfit(fn: Callable[..., object], names: frozenset[str]) -> str | None:
    """Why keyword arguments ``names`` do not fit ``fn``, or None: once per job and set
    of names (whether they bind depends on the names only), as binding costs more than
    the rest of a submission's checks together."""
    try:
        _signature(fn).bind(**dict.fromkeys(names))
    except TypeError as error:
        return str(error)
    return None


@functools.cache
def _signature(fn: Callable[..., object]) -> inspect.Signature:
    """A job's signature, read once per job."""
    return inspect.signature(fn)


def _pick(*choices: int | None) -> int:
    return next(choice for choice in choices if choice is not None)
