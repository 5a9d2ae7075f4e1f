"""``@job``: declare a job type.

The decorator registers the function (``jobplane.registry``) and returns a ``Job``
around it; Dramatiq actors are made from the registry when a worker builds its broker
(``jobplane.workers.broker``), so importing a job module needs no broker and the API
can learn job types from it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

from jobplane.library.jobs import Job
from jobplane.registry import DEFAULT_QUEUE, JobSpec, register
from jobplane.schedules import Schedule

P = ParamSpec("P")
R = TypeVar("R")


def job(
    name: str,
    *,
    queue: str = DEFAULT_QUEUE,
    priority: int = 0,
    max_retries: int | None = None,
    timeout: int | None = None,
    retry_for: tuple[type[BaseException], ...] | None = None,
    min_backoff: float = 1.0,
    max_backoff: float = 300.0,
    concurrency: int | None = None,
    periodic: Any = None,
    timezone: str | None = None,
    misfire: str = "all",
    max_lateness: float | None = None,
    catch_up_window: float | None = None,
    on_success: str | Job[..., Any] | None = None,
    on_failure: str | Job[..., Any] | None = None,
) -> Callable[[Callable[P, R]], Job[P, R]]:
    """Register the decorated function as job type ``name``.

    Parameters:
      name: the job type clients submit; stable, unique.
      queue: the queue its messages go to (default ``"default"``).
      max_retries: retries after a failed attempt, 0 to 100 (default:
        ``JOBPLANE_DEFAULT_MAX_RETRIES``, 3).
      timeout: time limit of one attempt, in seconds (default: ``JOBPLANE_DEFAULT_TIMEOUT``, 4 h).
      retry_for: exception types worth a retry (default: any exception).
      min_backoff, max_backoff: seconds before the first retry, and the cap
        (0 <= min_backoff <= max_backoff); the delay doubles at each retry, with jitter.
      concurrency: most tasks of this type running at once across every worker and
        host (default: no limit; ``JOBPLANE_CONCURRENCY`` overrides it). A task over
        the limit waits, pending, without using an attempt.
      periodic: a schedule, ``periodiq.cron("30 15 * * 1-5")``; runs are tasks like any other.
      timezone: the IANA timezone the cron expression is read in (default UTC).
      misfire: what catch-up does with runs missed while no scheduler ran: ``"all"``
        (run each), ``"latest"`` (run the newest only), ``"skip"`` (record them skipped).
      max_lateness: seconds; a run later than this is recorded skipped, whatever the policy.
      catch_up_window: seconds catch-up looks back (default 24 h, never before the
        platform first saw the schedule).
      on_success, on_failure: a job (or job type's name) to enqueue as a task of its
        own when a task of this type completes (called with ``task_id`` and
        ``result``) or fails after its retries (``task_id`` and ``error``); a
        submission's own ``onSuccess`` / ``onFailure`` replaces it.

    Returns a ``Job`` (``jobplane.Job``): calling it calls the function itself (in
    your own tests), with its name, docstring and signature; ``.enqueue(session, …)``,
    ``.delay(…)`` and ``.apply(…)`` submit it.
    """

    options: dict[str, Any] = {}
    if periodic is not None:
        options = {
            "periodic": periodic,
            "timezone": timezone,
            "misfire": misfire,
            "max_lateness": max_lateness,
            "catch_up_window": catch_up_window,
        }
        Schedule.from_options(name, options)  # a mistake fails at import, with the reason

    def decorate(fn: Callable[P, R]) -> Job[P, R]:
        spec = register(
            JobSpec(
                name=name,
                fn=fn,
                queue=queue,
                priority=priority,
                max_retries=max_retries,
                timeout=timeout,
                retry_for=retry_for,
                min_backoff=min_backoff,
                max_backoff=max_backoff,
                concurrency=concurrency,
                on_success=_name_of(on_success),
                on_failure=_name_of(on_failure),
                options=options,
            )
        )
        return Job(spec)

    return decorate


def _name_of(callback: str | Job[..., Any] | None) -> str | None:
    return callback if callback is None or isinstance(callback, str) else callback.name
