"""Built-in demo jobs: for trying jobplane out and for its own tests."""

from __future__ import annotations

import logging
import time
from typing import Any

from jobplane import current_job, job

logger = logging.getLogger(__name__)


@job("demo.noop")
def noop() -> None:
    """Does nothing: measures the platform itself."""


@job("demo.echo")
def echo(**params: Any) -> dict[str, Any]:
    """Returns its params as its result."""
    return params


#: demo.sleep sleeps in slices this long: Python can only interrupt a thread (for a
#: cancellation or a time limit) between two bytecodes, never inside one long C call.
SLEEP_SLICE = 0.05


@job("demo.sleep")
def sleep(seconds: float = 1.0, steps: int = 1) -> dict[str, Any]:
    """Sleeps ``seconds`` in ``steps`` equal parts, reporting progress after each.

    It never checks for cancellation itself: it shows that a cancel stops it anyway.
    """
    ctx = current_job()
    steps = max(1, int(steps))
    for step in range(1, steps + 1):
        deadline = time.monotonic() + seconds / steps
        while (left := deadline - time.monotonic()) > 0:
            time.sleep(min(left, SLEEP_SLICE))
        ctx.progress(step, steps)
        logger.info("step %d of %d done", step, steps)
    return {"slept": seconds, "steps": steps}


class DemoFailure(RuntimeError):
    """The failure demo.fail raises on purpose."""


@job("demo.fail")
def fail(times: int = 1) -> dict[str, Any]:
    """Fails the first ``times`` attempts, then succeeds."""
    ctx = current_job()
    attempt = ctx.attempt
    ctx.log.info("attempt %d started", attempt)
    if attempt <= times:
        raise DemoFailure(f"failing on purpose (attempt {attempt} of the first {times})")
    return {"attempt": attempt}
