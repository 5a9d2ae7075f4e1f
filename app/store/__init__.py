"""Every SQL statement jobplane runs, a module per role, one function per statement.

Callers own the transaction: each function takes ``conn`` (inside ``engine.begin()``)
and never commits. State changes are guarded UPDATEs (``WHERE status IN …``), each
status guard built from the transition table (``guards``); the number of rows they
touch says whether the transition happened, and every way back to pending is one
primitive (``requeue``). Rows come back as frozen dataclasses (``rows``). Callers name
the role: ``store.claims.claim_task(conn, …)``, ``store.outbox.lock_outbox_batch(conn, …)``.
"""

from jobplane.store import (
    claims,
    concurrency,
    counts,
    followups,
    guards,
    logs,
    outbox,
    recovery,
    requeue,
    retention,
    rows,
    schedules,
    sql,
    state,
    stats,
    tasks,
    workers,
    workflows,
)

__all__ = [
    "claims",
    "concurrency",
    "counts",
    "followups",
    "guards",
    "logs",
    "outbox",
    "recovery",
    "requeue",
    "retention",
    "rows",
    "schedules",
    "sql",
    "state",
    "stats",
    "tasks",
    "workers",
    "workflows",
]
