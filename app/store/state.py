"""Small shared state in ``platform_state``: a key, a value, and a compare-and-swap.

Callers own the transaction: each function takes ``conn`` and never commits.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    Connection,
    select,
    update,
)

from jobplane.models import (
    KeyValue,
)
from jobplane.store.sql import insert_ignoring_conflict

#: platform_state key: the broker epoch the rescuer (or a relay, first) last recorded
#: (see ``jobplane.broker.state``).
BROKER_EPOCH_KEY = "broker_epoch"


def read_state(conn: Connection, key: str) -> str | None:
    return conn.execute(select(KeyValue.value).where(KeyValue.key == key)).scalar_one_or_none()


def swap_state(conn: Connection, key: str, old: str | None, new: str, now: datetime) -> bool:
    """Set ``key`` to ``new`` only if it still holds ``old``; True if this call did it."""
    if old is None:
        # Of two first writers at once (a relay and the maintenance leader on a new
        # platform), the second finds the key taken: False, not a unique violation.
        inserted = conn.execute(
            insert_ignoring_conflict(conn, KeyValue, ["key"]).values(
                key=key, value=new, updated_at=now
            )
        )
        return bool(inserted.rowcount == 1)
    result = conn.execute(
        update(KeyValue)
        .where(KeyValue.key == key, KeyValue.value == old)
        .values(value=new, updated_at=now)
    )
    return result.rowcount == 1


#: platform_state key: the runs ledger has forgotten every run that fired before this
#: instant (ISO-8601), so catch-up never looks before it.
RUNS_KEPT_SINCE_KEY = "schedule_runs_kept_since"


def put_state(conn: Connection, key: str, value: str, now: datetime) -> None:
    """Set ``key`` to ``value``, whatever it held."""
    updated = conn.execute(
        update(KeyValue).where(KeyValue.key == key).values(value=value, updated_at=now)
    )
    if updated.rowcount == 0:
        conn.execute(
            insert_ignoring_conflict(conn, KeyValue, ["key"]).values(
                key=key, value=value, updated_at=now
            )
        )
