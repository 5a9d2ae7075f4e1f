"""Built-in demo jobs: for trying jobplane out and for its own tests."""

from __future__ import annotations

import time
from typing import Any

from workers import current_job, job


@job("demo.noop")
def noop() -> None:
    """Does nothing: measures the platform itself."""


@job("demo.echo")
def echo(**params: Any) -> dict[str, Any]:
    """Returns its params as its result."""
    return params


@job("demo.sleep")
def sleep(seconds: float = 1.0, steps: int = 1) -> dict[str, Any]:
    """Sleeps ``seconds`` in ``steps`` equal parts, reporting progress after each."""
    ctx = current_job()
    steps = max(1, int(steps))
    for step in range(1, steps + 1):
        time.sleep(seconds / steps)
        ctx.progress(step, steps)
    return {"slept": seconds, "steps": steps}


class DemoFailure(RuntimeError):
    """The failure demo.fail raises on purpose."""


@job("demo.fail")
def fail(times: int = 1) -> dict[str, Any]:
    """Fails the first ``times`` attempts, then succeeds."""
    attempt = current_job().attempt
    if attempt <= times:
        raise DemoFailure(f"failing on purpose (attempt {attempt} of the first {times})")
    return {"attempt": attempt}
