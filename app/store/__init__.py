"""Every SQL statement jobplane runs, a module per role, one function per statement.

Callers own the transaction: each function takes ``conn`` (inside ``engine.begin()``)
and never commits. State changes are guarded UPDATEs (``WHERE status IN …``); the
number of rows they touch says whether the transition happened. Callers name the role:
``store.claims.claim_task(conn, …)``, ``store.outbox.take_outbox_batch(conn, …)``.
"""

from jobplane.store import (
    claims,
    concurrency,
    guards,
    logs,
    outbox,
    recovery,
    retention,
    schedules,
    sql,
    state,
    stats,
    tasks,
)

__all__ = [
    "claims",
    "concurrency",
    "guards",
    "logs",
    "outbox",
    "recovery",
    "retention",
    "schedules",
    "sql",
    "state",
    "stats",
    "tasks",
]
