"""Enqueueing a whole batch of messages in one Redis round trip.

``RedisBroker.enqueue`` is one round trip per message; the relay publishes an outbox
batch at a time, so it enqueues here, through Dramatiq's own dispatch script.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

import dramatiq
from dramatiq.brokers.redis import RedisBroker
from redis.client import Pipeline

from jobplane.broker import backlog, redis_dispatch, state
from jobplane.broker.channels import wake_channel
from jobplane.broker.redis_dispatch import dispatch


def enqueue_all(
    broker: dramatiq.Broker,
    messages: Sequence[dramatiq.Message[Any]],
    *,
    unfetched: dict[str, int] | None = None,
) -> str | None:
    """Enqueue ``messages`` (no delay); returns the broker's epoch as of the enqueues
    (None: Redis has none, it lost its data and maintenance has not set a new one yet).
    ``unfetched``, if given, is filled with how many messages of each of their queues no
    worker has fetched right after the enqueues (``backlog.unfetched_counts``), read in
    the same round trip on Redis.

    ``RedisBroker.enqueue`` costs one round trip per message, which caps a relay at a
    few thousand messages a second. Dramatiq has no public batch enqueue, so this does
    what ``RedisBroker.enqueue`` does, with every script call in one pipeline
    (``redis_dispatch``). The same pipeline then publishes each queue's name on the
    wake-up channel, so idle workers fetch at once instead of at the end of their poll
    back-off (``consumer_wakeup``), and reads the epoch. It runs as one MULTI/EXEC
    transaction: no loss of Redis's data can fall between the enqueues and that read,
    so the messages are in the epoch it returns.

    A message keeps the ``redis_message_id`` its options give (``state.redis_message_id``);
    one without gets a fresh one, as ``RedisBroker.enqueue`` gives it.
    """
    queues = list(dict.fromkeys(message.queue_name for message in messages))
    if not isinstance(broker, RedisBroker):
        for message in messages:
            broker.enqueue(message)
        if unfetched is not None:
            unfetched.update(backlog.unfetched_counts(broker, queues))
        return state.broker_epoch(broker)
    sent = []
    for message in messages:
        if "redis_message_id" not in message.options:
            message = message.copy(options={"redis_message_id": str(uuid.uuid4())})
        broker.emit_before("enqueue", message, None)
        sent.append(message)

    def fill(pipeline: Pipeline) -> None:
        for message in sent:
            redis_id = message.options["redis_message_id"]
            dispatch(broker, pipeline, "enqueue", message.queue_name, redis_id, message.encode())
        # After the enqueues, in pipeline order: a woken worker's fetch finds the messages.
        for queue in queues:
            pipeline.publish(wake_channel(broker.namespace), queue)
        if unfetched is not None:
            for queue in queues:
                pipeline.llen(backlog.queue_key(broker, queue))
        pipeline.get(state.EPOCH_KEY)

    replies = redis_dispatch.execute(broker, fill, transaction=True)
    for message in sent:
        broker.emit_after("enqueue", message, None)
    if unfetched is not None:
        lengths = replies[-1 - len(queues) : -1]
        unfetched.update(zip(queues, map(int, lengths), strict=True))
    return state.decoded(replies[-1])
