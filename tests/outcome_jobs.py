"""Jobs whose results the database cannot store, for the lifecycle's tests."""

from __future__ import annotations

from typing import Any

from jobplane import job

UNSTORABLE: dict[str, Any] = {
    "nan": float("nan"),
    "infinity": {"value": float("inf")},
    "nul": "a\x00b",
    "surrogate": "\ud800",
}


@job("test.unstorable")
def unstorable(kind: str) -> Any:
    """Returns a result that JSON or the database cannot hold."""
    return UNSTORABLE[kind]
