"""Jobs for the lifecycle's tests: results the database cannot store, what a context reads."""

from __future__ import annotations

import functools
from typing import Any

from jobplane import current_job, job

UNSTORABLE: dict[str, Any] = {
    "nan": float("nan"),
    "infinity": {"value": float("inf")},
    "nul": "a\x00b",
    "surrogate": "\ud800",
    # stored, but then unreadable by the API: 40 lists, one inside the other
    "deep": {"rows": functools.reduce(lambda inner, _: [inner], range(40), [])},
}


@job("test.unstorable")
def unstorable(kind: str) -> Any:
    """Returns a result that JSON or the database cannot hold."""
    return UNSTORABLE[kind]


@job("test.cancel_check_interval")
def cancel_check_interval() -> dict[str, float]:
    """Returns how often its context reads whether the task was cancelled, in seconds."""
    return {"interval": current_job().settings.cancel_check_interval}
