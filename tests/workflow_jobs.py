"""Jobs for the end-to-end tests of workflows, run by real worker processes.

A callback that must be seen to run exactly once records itself in a table of the
tests' own (``workflow_callback_runs``) through ``ctx.transaction()``: its write commits
with its completion, so an attempt killed before that leaves none.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from jobplane import current_job, job


class Base(DeclarativeBase):
    """The tests' own models, as a user's application has them."""


class CallbackRun(Base):
    """One row per completed run of ``wf.collect``."""

    __tablename__ = "workflow_callback_runs"
    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    task_id: Mapped[str]
    members: Mapped[int]


@job("wf.add", max_retries=3)
def add(n: int, result: int = 0, seconds: float = 0.0) -> int:
    """``result`` (the step before's, if it takes it) plus ``n``, after ``seconds``."""
    time.sleep(seconds)
    return result + n


@job("wf.square", max_retries=5)
def square(n: int, seconds: float = 0.0) -> int:
    time.sleep(seconds)
    return n * n


@job("wf.collect", max_retries=5)
def collect(result: list[Any]) -> list[Any]:
    """The step after a group: records its run, returns the members' results."""
    ctx = current_job()
    with ctx.transaction() as session:
        session.add(CallbackRun(task_id=ctx.task_id, members=len(result)))
    return result


@job("wf.unless_file", max_retries=0)
def unless_file(path: str) -> str:
    """Fails while ``path`` exists: a step a test makes fail, then lets pass."""
    if Path(path).exists():
        raise RuntimeError(f"{path} exists")
    return "passed"


@job("wf.email", queue="email")
def email(to: str) -> str:
    return f"sent to {to}"


@job("wf.quant", queue="quant")
def quant(symbol: str) -> str:
    return f"priced {symbol}"


@job("wf.notify")
def notify(task_id: str, result: Any = None, error: str | None = None, channel: str = "") -> str:
    """A callback: says which task ended, and how."""
    return f"{channel}:{task_id}:{'failed' if error else 'done'}"


@job("wf.report", on_success=notify, on_failure="wf.notify")
def report(month: str) -> dict[str, str]:
    """A job whose type names its callbacks."""
    return {"month": month}
