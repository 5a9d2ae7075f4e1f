"""When a failed attempt is retried, and after how long."""

from __future__ import annotations

import random

from dramatiq.middleware import TimeLimitExceeded

from jobplane.domain import InvalidParams, RetryRequested
from jobplane.registry import JobSpec
from jobplane.workers.effects import EffectsNotCommitted

#: Doublings past which the delay is the cap anyway (2**62 × any sane min_backoff is
#: beyond any max_backoff); bounding the exponent keeps a huge retry number from
#: overflowing a float.
MAX_DOUBLINGS = 62


class ParamsDoNotFit(InvalidParams):
    """A task's params do not fit its job's signature: no retry can make them fit.

    Application code may enqueue a job type its process does not import; the worker,
    which has the function, is then the first to check its params."""


def deserves_retry(spec: JobSpec, error: BaseException) -> bool:
    """Whether ``error`` is one the job retries for (any exception, unless ``retry_for``).

    A time limit counts as a failed attempt like any error; other interrupts
    (cancellation, KeyboardInterrupt, SystemExit) never get a retry, nor do params
    that do not fit the job. A retry the job asked for (``ctx.retry``) and a
    ``ctx.transaction()`` that could not commit always do: neither is an error of the
    kind ``retry_for`` chooses among.
    """
    if isinstance(error, ParamsDoNotFit):
        return False
    if isinstance(error, RetryRequested | EffectsNotCommitted):
        return True
    if isinstance(error, TimeLimitExceeded):
        return spec.retry_for is None or issubclass(TimeLimitExceeded, spec.retry_for)
    if not isinstance(error, Exception):
        return False
    return spec.retry_for is None or isinstance(error, spec.retry_for)


def backoff_seconds(spec: JobSpec, retry_number: int, *, jitter: float = 0.1) -> float:
    """Delay before retry number ``retry_number`` (1-based): min, 2×min, 4×min … capped.

    Jitter only lengthens the delay (up to ``jitter`` of it), so a retry is never
    earlier than the documented 1 s, 2 s, 4 s, and retries of many tasks that failed
    together spread out. Any ``retry_number`` gives a finite delay of at most
    ``max_backoff`` × (1 + ``jitter``) seconds.
    """
    doublings = min(max(retry_number - 1, 0), MAX_DOUBLINGS)
    base: float = min(spec.max_backoff, spec.min_backoff * 2**doublings)
    return base * (1 + random.uniform(0, jitter))


def retry_delay(spec: JobSpec, error: BaseException, retry_number: int) -> float:
    """Seconds before retry number ``retry_number`` after ``error``: the delay the job
    asked for with ``ctx.retry``, exactly, or else the backoff."""
    if isinstance(error, RetryRequested):
        return error.delay_seconds
    return backoff_seconds(spec, retry_number)
