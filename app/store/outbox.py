"""The outbox: the rows a relay takes and publishes, and the rows written with a task to publish it.

Callers own the transaction: each function takes ``conn`` and never commits.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from functools import lru_cache
from typing import Any, NamedTuple, TypeVar

from sqlalchemy import (
    BigInteger,
    Connection,
    Integer,
    Select,
    and_,
    bindparam,
    delete,
    func,
    insert,
    or_,
    select,
    true,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.sql.dml import Insert, Update

from jobplane.models import (
    KeyValue,
    MetricCounter,
    Outbox,
    Task,
)
from jobplane.store.sql import NOW
from jobplane.store.state import BROKER_EPOCH_KEY

SelectT = TypeVar("SelectT", bound="Select[*tuple[Any, ...]]")

#: A task's columns that its outbox row is made of.
OUTBOX_SOURCE = (
    Task.id,
    Task.dispatch,
    Task.run_after,
    Task.type,
    Task.queue,
    Task.timeout_seconds,
    Task.priority,
)


class OutboxMessage(NamedTuple):
    """What the message of a taken outbox row carries, or needs to be routed."""

    task_id: str
    dispatch: int
    type: str
    queue: str
    timeout_seconds: int


class DueRow(NamedTuple):
    """A due outbox row a relay has locked: its place in the take order, and its message."""

    id: int
    priority: int
    message: OutboxMessage


class OutboxBatch(NamedTuple):
    """The due outbox rows a relay locked, in the take order, and when to look again."""

    rows: list[DueRow]
    #: When the earliest row that was not due yet becomes due (None: there is none).
    next_due: datetime | None


#: Where a look at the outbox goes on from: the (priority, id) of the last row it took.
After = tuple[int, int]


# Not "the earliest row": a due row another relay holds (SKIP LOCKED) is that relay's to
# publish, and waiting for it would make this one spin until that relay commits.
_later = Outbox.__table__.alias("later")


_NEXT_DUE = select(func.min(_later.c.available_at)).where(_later.c.available_at > NOW)


_TAKEN = (
    Outbox.id,
    Outbox.priority,
    Outbox.task_id,
    Outbox.dispatch,
    Outbox.type,
    Outbox.queue,
    Outbox.timeout_seconds,
)


def _after_last_taken(table: Any) -> Any:
    """Rows after the last one taken, in the take order (priority down, then id up)."""
    priority = bindparam("b_priority", type_=Integer)
    last_id = bindparam("b_id", type_=BigInteger)
    return or_(table.priority < priority, and_(table.priority == priority, table.id > last_id))


def _in_take_order(statement: SelectT, table: Any) -> SelectT:
    return statement.order_by(table.priority.desc(), table.id).limit(
        bindparam("b_limit", type_=Integer)
    )


@lru_cache(maxsize=4)
def _lock_outbox_batch(after: bool, skip: bool) -> Select[Any]:
    """The take as one walk of the (priority, id) index: over every queue, or past the
    queues to skip by filtering them out (SQLite's, see ``lock_outbox_batch``)."""
    statement = select(*_TAKEN, _NEXT_DUE.scalar_subquery().label("next_due")).where(
        Outbox.available_at <= NOW
    )
    if after:
        statement = statement.where(_after_last_taken(Outbox))
    if skip:
        statement = statement.where(Outbox.queue.not_in(bindparam("b_skip", expanding=True)))
    return _in_take_order(statement, Outbox).with_for_update(skip_locked=True)


@lru_cache(maxsize=4)
def _lock_outbox_batch_skipping(after: bool) -> Select[Any]:
    """The take past the queues to skip, queue by queue (PostgreSQL).

    Filtering the walk of the (priority, id) index by queue would read every row a
    skipped queue holds: the rows the relay keeps back while its queue is full, which
    may be millions. Instead: the queues that have rows, one index probe each (a loose
    scan of the (queue, priority, id) index), and from each queue not skipped its first
    rows in the take order, merged. The result is the same rows in the same order; each
    queue may lock up to the limit, and what the merge leaves out stays locked only
    until this batch's transaction ends.
    """
    after_queue = Outbox.__table__.alias("after_queue")
    queues = select(func.min(Outbox.queue).label("queue")).cte("queues", recursive=True)
    next_queue = (
        select(func.min(after_queue.c.queue))
        .where(after_queue.c.queue > queues.c.queue)
        .scalar_subquery()
    )
    queues = queues.union_all(select(next_queue).where(queues.c.queue.is_not(None)))
    per_queue = select(*_TAKEN).where(Outbox.queue == queues.c.queue, Outbox.available_at <= NOW)
    if after:
        per_queue = per_queue.where(_after_last_taken(Outbox))
    due = _in_take_order(per_queue, Outbox).with_for_update(skip_locked=True).lateral("due")
    statement = (
        select(*due.c, _NEXT_DUE.scalar_subquery().label("next_due"))
        .select_from(queues)
        .join(due, true())
        .where(
            queues.c.queue.is_not(None),
            queues.c.queue.not_in(bindparam("b_skip", expanding=True)),
        )
    )
    return _in_take_order(statement, due.c)


def lock_outbox_batch(
    conn: Connection,
    now: datetime,
    limit: int,
    *,
    after: After | None = None,
    skip_queues: Collection[str] = (),
) -> OutboxBatch:
    """Lock up to ``limit`` due outbox rows, highest priority first, then oldest; returns
    them with their messages, in that order.

    ``after`` goes on from a row an earlier call returned; rows of ``skip_queues`` are
    left alone (neither returned nor locked). One statement, which reads nothing from
    ``tasks``: the row carries what its message needs. The caller publishes the rows it
    chooses, deletes them (``delete_outbox_rows``), then commits; the others stay, and
    so do all of them if it fails or dies before the commit (and are published again:
    a duplicate, which the claim drops). ``SKIP LOCKED`` lets several relays share the
    table on PostgreSQL (SQLAlchemy drops it on SQLite, where one relay is the rule).
    A row whose task was cancelled or deleted meanwhile is published all the same; the
    worker drops its message.

    Nothing is written on the tasks: a pending task without an outbox row is one whose
    message the broker was given (see ``_published``). The same statement says when the
    next row not yet due becomes due (a second one asks when it found nothing).
    """
    params: dict[str, Any] = {"b_now": now, "b_limit": limit}
    if after is not None:
        params["b_priority"], params["b_id"] = after
    if skip_queues:
        params["b_skip"] = list(skip_queues)
    if skip_queues and conn.dialect.name == "postgresql":
        statement = _lock_outbox_batch_skipping(after is not None)
    else:  # SQLite filters: one relay, no row locks, and a table that holds no millions
        statement = _lock_outbox_batch(after is not None, bool(skip_queues))
    found = conn.execute(statement, params).all()
    if not found:
        return OutboxBatch([], conn.execute(_NEXT_DUE, params).scalar_one())
    rows = [DueRow(row.id, row.priority, OutboxMessage(*row[2:-1])) for row in found]
    return OutboxBatch(rows, found[0].next_due)


_DELETE_OUTBOX_ROWS = delete(Outbox).where(Outbox.id.in_(bindparam("b_ids", expanding=True)))


def delete_outbox_rows(conn: Connection, ids: Collection[int]) -> None:
    """Delete the outbox rows ``ids`` (locked by ``lock_outbox_batch``): published."""
    if ids:
        conn.execute(_DELETE_OUTBOX_ROWS, {"b_ids": list(ids)})


def count_published_batch(conn: Connection, ids: Collection[int], counter: str) -> str | None:
    """Delete the published outbox rows ``ids`` (locked by ``lock_outbox_batch``) and add
    their number to the relay's ``counter``; returns the broker epoch the database
    records (None: none yet), locked until the batch's transaction ends.

    The lock (FOR SHARE) conflicts with maintenance's swap of the epoch (an UPDATE), so
    that the rescuer handling a broker loss either waits for this batch's commit, and then
    republishes its tasks as well, or has swapped the epoch before, and this batch sees
    the new one and rolls back. The delete, the lock and the count are one statement on
    PostgreSQL: no round trip of their own beside the counter's upsert, which every batch
    runs anyway. (SQLite deletes first, in a statement of its own; it has no row locks
    and needs none: its writers take turns, the relay's transaction holding the write
    lock from its delete on.)
    """
    postgres = conn.dialect.name == "postgresql"
    if not postgres:
        delete_outbox_rows(conn, ids)
    row = conn.execute(
        _count_published_batch(postgres),
        {"b_name": counter, "b_value": len(ids), "b_ids": list(ids)},
    ).one()
    return row.epoch  # type: ignore[no-any-return]


@lru_cache(maxsize=2)
def _count_published_batch(postgres: bool) -> Any:
    epoch = (
        select(KeyValue.value)
        .where(KeyValue.key == BROKER_EPOCH_KEY)
        .with_for_update(read=True)
        .cte("recorded_epoch")
    )
    dialect = postgresql if postgres else sqlite
    statement = dialect.insert(MetricCounter).values(
        name=bindparam("b_name"), label="", value=bindparam("b_value")
    )
    statement = statement.on_conflict_do_update(
        index_elements=["name", "label"],
        set_={"value": MetricCounter.value + statement.excluded.value},
    )
    if postgres:
        # A data-modifying CTE runs whether or not the statement reads it.
        statement = statement.add_cte(_DELETE_OUTBOX_ROWS.cte("published_rows"))
    return statement.returning(select(epoch.c.value).scalar_subquery().label("epoch")).add_cte(
        epoch
    )


def write_with_outbox(conn: Connection, statement: Insert | Update, now: datetime) -> list[str]:
    """Run ``statement``, an INSERT or UPDATE of tasks, and write an outbox row for each
    task it wrote (due at its ``run_after``, carrying its dispatch number); their ids.

    The statement returns the columns an outbox row is made of (``OUTBOX_SOURCE``), so
    the task is not read again; both writes are in the caller's transaction.
    """
    rows = conn.execute(statement.returning(*OUTBOX_SOURCE)).all()
    if rows:
        conn.execute(
            insert(Outbox),
            [
                {
                    "task_id": row.id,
                    "dispatch": row.dispatch,
                    "available_at": row.run_after,
                    "created_at": now,
                    "type": row.type,
                    "queue": row.queue,
                    "timeout_seconds": row.timeout_seconds,
                    "priority": row.priority,
                }
                for row in rows
            ],
        )
    return [row.id for row in rows]
