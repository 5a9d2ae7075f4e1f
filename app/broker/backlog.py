"""How many messages of a queue the broker holds that no worker has fetched yet.

The relay keeps each queue's backlog on the broker short (its window), so that a task
of higher priority, still in the outbox, is published before those of lower priority
rather than behind them. Each broker keeps its queue differently; what is read here is
outside Dramatiq's public API for Redis and the stub broker, and
``tests/integration/test_broker_internals.py`` fails loudly if an upgrade changes it.
"""

from __future__ import annotations

from collections.abc import Collection

import dramatiq
from dramatiq.brokers.redis import RedisBroker
from dramatiq.brokers.stub import StubBroker


def unfetched_counts(broker: dramatiq.Broker, queues: Collection[str]) -> dict[str, int]:
    """For each of ``queues``, the messages the broker holds that no worker has fetched.

    Redis: the length of the list ``<namespace>:<queue>`` that Dramatiq's dispatch script
    pushes a message id onto at enqueue and pops at fetch (a fetched message moves to
    its worker's ack set); all the queues in one pipelined round trip. RabbitMQ: the
    queue's ready messages (``get_queue_message_counts``, a passive declare per queue).
    In-memory: the size of the queue's ``queue.Queue``, which its workers take from.
    A queue the broker has never seen holds none.
    """
    if not queues:
        return {}
    if isinstance(broker, RedisBroker):
        names = list(queues)
        pipeline = broker.client.pipeline(transaction=False)
        for queue in names:
            pipeline.llen(queue_key(broker, queue))
        return dict(zip(names, map(int, pipeline.execute()), strict=True))
    if isinstance(broker, StubBroker):
        return {q: broker.queues[q].qsize() if q in broker.queues else 0 for q in queues}
    counts = broker.get_queue_message_counts  # type: ignore[attr-defined]
    return {queue: int(counts(queue)[0]) for queue in queues}


def queue_key(broker: RedisBroker, queue: str) -> str:
    """The Redis list of ``queue``'s message ids not yet fetched (Dramatiq's layout)."""
    return f"{broker.namespace}:{queue}"
