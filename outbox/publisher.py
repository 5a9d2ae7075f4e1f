"""Turning outbox rows into Dramatiq messages, by name (no job code imported)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import dramatiq

from jobplane.broker import state
from jobplane.broker.enqueue import enqueue_all
from jobplane.store.outbox import OutboxMessage


def publish(
    broker: dramatiq.Broker, *rows: OutboxMessage, unfetched: dict[str, int] | None = None
) -> str | None:
    """Enqueue one message per outbox row, on its task's queue; returns the broker's
    epoch as of the enqueues (``jobplane.broker.enqueue.enqueue_all``, which fills
    ``unfetched`` with its queues' counts right after them).

    A message carries only the task id and the dispatch number; the worker reads
    everything else from the row. The task's time limit travels in the message's
    options, where Dramatiq's TimeLimit middleware looks first; its id in Redis is the
    publication's own, so that maintenance can ask whether Redis still holds it.
    """
    _declare_queues(broker, rows)
    return enqueue_all(
        broker,
        [
            dramatiq.Message(
                queue_name=row.queue,
                actor_name=row.type,
                args=(),
                kwargs={"task_id": row.task_id, "dispatch": row.dispatch},
                options={
                    "time_limit": row.timeout_seconds * 1000,
                    "redis_message_id": state.redis_message_id(row.task_id, row.dispatch),
                },
                message_id=str(uuid.uuid4()),
            )
            for row in rows
        ],
        unfetched=unfetched,
    )


def _declare_queues(broker: dramatiq.Broker, rows: Sequence[OutboxMessage]) -> None:
    """Dramatiq refuses to enqueue on an undeclared queue."""
    for queue in {row.queue for row in rows} - broker.get_declared_queues():
        broker.declare_queue(queue)
