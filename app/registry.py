"""The registry of job types: what the API accepts and what workers run.

``jobplane.job`` adds to it when a job module is imported; every process imports the
user's job modules (``JOBPLANE_JOBS``, and the demo jobs when they are on) at start
through ``load_jobs``, by name: the registry sits below ``jobplane.workers``, which
holds the demo jobs. Nothing here needs a broker, so the API learns the job types without one.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from jobplane.domain import MAX_RETRIES, JobplaneError, UnknownJobType

#: The built-in ``demo.*`` jobs, loaded only when asked for (``JOBPLANE_DEMO_JOBS``).
DEMO_JOB_MODULE = "jobplane.workers.jobs.demo"

DEFAULT_QUEUE = "default"


@dataclass(frozen=True)
class JobSpec:
    """A job type: its name, its function and its defaults (None: the settings' default)."""

    name: str
    fn: Callable[..., Any]
    queue: str = DEFAULT_QUEUE
    priority: int = 0
    max_retries: int | None = None
    timeout: int | None = None
    #: Exception types that deserve a retry (None: every exception).
    retry_for: tuple[type[BaseException], ...] | None = None
    #: Backoff of the first retry and the cap, in seconds.
    min_backoff: float = 1.0
    max_backoff: float = 300.0
    #: Job types to enqueue when a task of this type completes (with ``task_id`` and
    #: ``result``) or fails (with ``task_id`` and ``error``), unless its submission
    #: names its own (None: none).
    on_success: str | None = None
    on_failure: str | None = None
    #: Most tasks of this type running at once, across every worker (None: no limit).
    concurrency: int | None = None
    options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # At the decorator, so a mistake fails the job module's import with the reason.
        if self.max_retries is not None and not 0 <= self.max_retries <= MAX_RETRIES:
            raise InvalidJobSpec(
                f"job {self.name!r}: max_retries must be between 0 and {MAX_RETRIES}, "
                f"not {self.max_retries}"
            )
        if not 0 <= self.min_backoff <= self.max_backoff:
            raise InvalidJobSpec(
                f"job {self.name!r}: need 0 <= min_backoff <= max_backoff (seconds), "
                f"not {self.min_backoff} and {self.max_backoff}"
            )

    def concurrency_limit(self, overrides: dict[str, int]) -> int | None:
        """The limit in force: ``JOBPLANE_CONCURRENCY`` wins over the decorator; 0 is none."""
        limit = overrides.get(self.name, self.concurrency)
        return limit or None


_jobs: dict[str, JobSpec] = {}


class InvalidJobSpec(JobplaneError):
    """A job's declaration (``@job``) has a value out of its range."""


class JobModuleError(JobplaneError):
    """A job module listed in JOBPLANE_JOBS cannot be imported."""


class DuplicateJobType(JobplaneError):
    """Two different functions were registered under one job type."""


def register(spec: JobSpec) -> JobSpec:
    """Add ``spec``; registering the same function again (a re-import) is harmless."""
    existing = _jobs.get(spec.name)
    if existing is not None and _qualname(existing.fn) != _qualname(spec.fn):
        raise DuplicateJobType(
            f"job type {spec.name!r} is already registered by {_qualname(existing.fn)}"
        )
    _jobs[spec.name] = spec
    return spec


def get_job(name: str) -> JobSpec:
    """The spec of job type ``name``, or ``UnknownJobType`` listing the known ones."""
    try:
        return _jobs[name]
    except KeyError:
        raise UnknownJobType(name, known_types()) from None


def known_types() -> list[str]:
    return sorted(_jobs)


def all_jobs() -> list[JobSpec]:
    return [_jobs[name] for name in known_types()]


def load_jobs(modules: Iterable[str] = (), *, demo_jobs: bool = False) -> list[JobSpec]:
    """Import ``modules`` (and the demo jobs, with ``demo_jobs``); return every
    registered job.

    Callers pass their settings' ``job_modules`` and ``demo_jobs``.
    """
    if demo_jobs:
        importlib.import_module(DEMO_JOB_MODULE)
    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError as error:
            raise JobModuleError(
                f"cannot import job module {name!r} (listed in JOBPLANE_JOBS): {error}"
            ) from error
    return all_jobs()


def _qualname(fn: Callable[..., Any]) -> str:
    return f"{fn.__module__}.{fn.__qualname__}"
