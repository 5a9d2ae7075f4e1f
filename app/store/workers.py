"""The worker processes seen: each one's monitor reports in, the admin stats list them.

Callers own the transaction: each function takes ``conn`` and never commits.
"""

from __future__ import annotations

from datetime import datetime
from functools import lru_cache

from sqlalchemy import Connection, delete, func, select
from sqlalchemy.dialects import postgresql, sqlite

from jobplane.models import Task, Worker
from jobplane.store.guards import RUNNING
from jobplane.store.rows import WorkerRow


def report(conn: Connection, name: str, now: datetime) -> None:
    """Worker ``name`` (host:pid) is alive at ``now``."""
    conn.execute(_report(conn.dialect.name), {"name": name, "last_seen_at": now})


@lru_cache(maxsize=2)
def _report(dialect_name: str) -> postgresql.Insert | sqlite.Insert:
    insert = postgresql.insert if dialect_name == "postgresql" else sqlite.insert
    statement = insert(Worker)
    return statement.on_conflict_do_update(
        index_elements=["name"], set_={"last_seen_at": statement.excluded.last_seen_at}
    )


def seen_since(conn: Connection, since: datetime) -> list[WorkerRow]:
    """Workers that reported since ``since``, by name, with how many tasks each runs.

    The running tasks are read through the live tasks' index: as many as run now,
    whatever the table holds.
    """
    seen = conn.execute(
        select(Worker.name, Worker.last_seen_at)
        .where(Worker.last_seen_at >= since)
        .order_by(Worker.name)
    ).all()
    if not seen:
        return []
    running = dict(
        conn.execute(
            select(Task.worker, func.count())
            .where(Task.status == RUNNING, Task.worker.in_([name for name, _ in seen]))
            .group_by(Task.worker)
        ).all()
    )
    return [WorkerRow(name, last, running.get(name, 0)) for name, last in seen]


def forget_before(conn: Connection, cutoff: datetime) -> int:
    """Forget the workers not seen since ``cutoff``; returns how many."""
    return conn.execute(delete(Worker).where(Worker.last_seen_at < cutoff)).rowcount
