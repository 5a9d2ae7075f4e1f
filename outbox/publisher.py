"""Turning an outbox row into a Dramatiq message, by name (no job code imported)."""

from __future__ import annotations

import uuid
from typing import Any

import dramatiq
from sqlalchemy import Row


def publish(broker: dramatiq.Broker, row: Row[Any]) -> None:
    """Enqueue the message of one outbox row on its task's queue.

    The message carries only the task id and the dispatch number; the worker reads
    everything else from the row. The task's time limit travels in the message's
    options, where Dramatiq's TimeLimit middleware looks first.
    """
    if row.queue not in broker.get_declared_queues():
        broker.declare_queue(row.queue)
    broker.enqueue(
        dramatiq.Message(
            queue_name=row.queue,
            actor_name=row.type,
            args=(),
            kwargs={"task_id": row.task_id, "dispatch": row.dispatch},
            options={"time_limit": row.timeout_seconds * 1000},
            message_id=str(uuid.uuid4()),
        )
    )
