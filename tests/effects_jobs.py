"""Jobs for the tests of ``ctx.transaction()``, ``ctx.retry`` and ``ctx.enqueue``.

They write to a table of the tests' own, ``effects_writes``, as a user's job writes to
its models: no schema of its own, so it lives in the database's default schema whatever
``JOBPLANE_DB_SCHEMA`` says. A test makes a job stop at a point of its body (``hold``)
with files in a directory it names: the job says it got there, then waits to be let go.
Files, so that the same gates work in a worker process the test SIGKILLs.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from sqlalchemy import UniqueConstraint, select
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from jobplane import StaleAttempt, current_job, job


class Base(DeclarativeBase):
    """The tests' own models, as a user's application has them."""


class EffectsWrite(Base):
    """One row per write a job made (``attempt``, ``fence``: the run that made it)."""

    __tablename__ = "effects_writes"
    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    key: Mapped[str]
    attempt: Mapped[int]
    fence: Mapped[int]


class Reservation(Base):
    """A key taken once: the database checks it only at the commit (deferred)."""

    __tablename__ = "effects_reservations"
    __table_args__ = (UniqueConstraint("key", deferrable=True, initially="DEFERRED"),)
    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    key: Mapped[str]


#: How long a held job waits to be let go before it gives up, in s.
HOLD_LIMIT_S = 60.0


def reached(gates: str, point: str, attempt: int) -> Path:
    """The file a job creates when attempt ``attempt`` gets to ``point``."""
    return Path(gates) / f"{point}-{attempt}"


def release(gates: str, point: str, attempt: int) -> None:
    """Let attempt ``attempt`` held at ``point`` go on."""
    (Path(gates) / f"go-{point}-{attempt}").touch()


def hold(gates: str, point: str, attempt: int) -> None:
    reached(gates, point, attempt).touch()
    go = Path(gates) / f"go-{point}-{attempt}"
    deadline = time.monotonic() + HOLD_LIMIT_S
    while not go.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"attempt {attempt} was never let go at {point!r}")
        time.sleep(0.02)


@job("test.effects.write", min_backoff=0, max_backoff=0)
def write(
    key: str,
    gates: str | None = None,
    hold_at: str | None = None,
    then: str | None = None,
    follow_up: bool = False,
) -> dict[str, Any]:
    """Writes one row in ``ctx.transaction()``; its first attempt may be held at a point
    (``hold_at``: before, inside or after the block) and the body may fail after it."""
    ctx = current_job()

    def point(name: str) -> None:
        if gates is not None and hold_at == name and ctx.attempt == 1:
            hold(gates, name, ctx.attempt)

    point("before")
    try:
        with ctx.transaction() as session:
            session.add(EffectsWrite(key=key, attempt=ctx.attempt, fence=ctx.fence_token))
            ctx.log.warning("writing %s", key)
            if follow_up:
                ctx.enqueue("demo.noop", idempotency_key=f"{key}-follow-up")
            point("inside")
    except StaleAttempt:
        if gates is not None:
            reached(gates, "stale", ctx.attempt).touch()
        raise
    point("after")
    if then == "raise":
        raise RuntimeError("the body failed after its transaction")
    return {"key": key, "fence": ctx.fence_token}


@job("test.effects.reserve", min_backoff=0, max_backoff=0)
def reserve(key: str) -> None:
    """Writes a row and reserves ``key``: a key already taken fails the commit itself."""
    ctx = current_job()
    with ctx.transaction() as session:
        session.add(EffectsWrite(key=key, attempt=ctx.attempt, fence=ctx.fence_token))
        session.add(Reservation(key=key))


@job("test.effects.one_at_a_time", concurrency=1)
def one_at_a_time(key: str, gates: str) -> None:
    """Writes a row in ``ctx.transaction()``; one task of its type runs at a time. Each
    holds inside its block until the test lets the first go (the later ones pass)."""
    ctx = current_job()
    with ctx.transaction() as session:
        session.add(EffectsWrite(key=key, attempt=ctx.attempt, fence=ctx.fence_token))
        hold(gates, "inside", 1)


@job("test.effects.twice")
def twice() -> None:
    """Opens a second ``ctx.transaction()``: refused."""
    ctx = current_job()
    with ctx.transaction():
        pass
    with ctx.transaction():
        pass


@job("test.effects.duplicate_key")
def duplicate_key(key: str) -> dict[str, str]:
    """Adds a row the table refuses (a taken id); says where the error surfaced."""
    ctx = current_job()
    try:
        with ctx.transaction() as session:
            taken = session.execute(select(EffectsWrite.id).limit(1)).scalar_one()
            session.add(EffectsWrite(id=taken, key=key, attempt=0, fence=0))
            inside = "nothing yet"  # the row is only sent at the flush, as the block ends
    except Exception as error:
        return {"inside": inside, "at_the_block": type(error).__name__}
    return {"inside": inside, "at_the_block": "nothing"}


@job("test.effects.retry")
def retry(delay: float, reason: str) -> None:
    """Asks for a retry after ``delay`` seconds."""
    current_job().retry(delay=delay, reason=reason)


@job("test.effects.follow_up_outside")
def follow_up_outside(key: str) -> None:
    """Enqueues a follow-up outside any transaction, then fails."""
    current_job().enqueue("demo.noop", idempotency_key=f"{key}-follow-up")
    raise RuntimeError("failed after enqueueing")
