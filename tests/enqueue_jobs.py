"""Jobs of the enqueue tests: one reads the row its enqueuer wrote in the same
transaction, and fails loudly (no retry) when that row is not there."""

from __future__ import annotations

import os
import threading

from sqlalchemy import Engine, create_engine, text

from jobplane import job

#: The table the enqueuing "application" writes its own rows to.
USER_TABLE = "enqueue_user_rows"

_engine: Engine | None = None
_lock = threading.Lock()


def user_engine() -> Engine:
    """The application's own engine (not jobplane's), on the worker's database."""
    global _engine
    with _lock:
        if _engine is None:
            _engine = create_engine(os.environ["JOBPLANE_DATABASE_URL"], pool_size=10)
        return _engine


@job("tests.enqueue.read_row", max_retries=0)
def read_row(row_id: int) -> str:
    """The note of the application's row ``row_id``; the row must exist."""
    with user_engine().connect() as conn:
        note = conn.execute(
            text(f"SELECT note FROM {USER_TABLE} WHERE id = :id"), {"id": row_id}
        ).scalar()
    if note is None:
        raise LookupError(f"row {row_id} of {USER_TABLE} is missing: enqueued before its commit")
    return str(note)


@job("tests.enqueue.add", queue="sums", priority=5, max_retries=7, timeout=60)
def add(a: int, b: int = 0) -> int:
    """The sum of ``a`` and ``b``."""
    return a + b
