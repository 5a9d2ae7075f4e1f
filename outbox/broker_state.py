"""What the relay needs from a broker beyond Dramatiq's public API.

Two questions — has the broker lost its data since we last looked (its *epoch*), and
does it hold any message of a queue? — and one speed-up: enqueueing a whole batch in
one Redis round trip. Each reads a broker-specific detail, kept here in one place;
``tests/integration/test_broker_state.py`` fails loudly if a Dramatiq upgrade changes
what these functions rely on.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

import dramatiq
from dramatiq.brokers.redis import RedisBroker
from dramatiq.brokers.stub import StubBroker
from redis.client import Pipeline

from app import redis_dispatch
from app.broker_channels import wake_channel
from app.redis_dispatch import dispatch

EPOCH_KEY = "jobplane:broker-epoch"
#: The epoch of a broker that keeps its messages on disk (RabbitMQ durable queues).
DURABLE_EPOCH = "durable"


def broker_epoch(broker: dramatiq.Broker) -> str:
    """An id that changes whenever the broker loses its data.

    Redis: a key set once (SET NX); after a restart without persistence or a
    FLUSHALL it is gone and the next call sets a new one. In-memory: one id per
    broker object, so per process. RabbitMQ keeps durable queues: constant.
    """
    if isinstance(broker, StubBroker):
        epoch: str | None = getattr(broker, "_jobplane_epoch", None)
        if epoch is None:
            epoch = str(uuid.uuid4())
            broker._jobplane_epoch = epoch  # type: ignore[attr-defined]
        return epoch
    client = getattr(broker, "client", None)
    if client is None:
        return DURABLE_EPOCH
    client.set(EPOCH_KEY, str(uuid.uuid4()), nx=True)
    value = client.get(EPOCH_KEY)
    return value.decode() if isinstance(value, bytes) else str(value)


def queue_holds_messages(broker: dramatiq.Broker, queue: str) -> bool:
    """Whether the broker holds any message of ``queue``, queued or being processed."""
    if isinstance(broker, StubBroker):
        stub_queue = broker.queues.get(queue)
        return stub_queue is not None and (
            stub_queue.qsize() > 0 or stub_queue.unfinished_tasks > 0
        )
    client = getattr(broker, "client", None)
    if client is not None:
        # Dramatiq's Redis layout: every message of a queue, queued or unacked, is a
        # field of the hash "<namespace>:<queue>.msgs" until it is acked.
        namespace = getattr(broker, "namespace", "dramatiq")
        return bool(client.hlen(f"{namespace}:{queue}.msgs"))
    counts = broker.get_queue_message_counts(queue)  # type: ignore[attr-defined]
    return any(counts[:2])


def enqueue_all(broker: dramatiq.Broker, messages: Sequence[dramatiq.Message[Any]]) -> None:
    """Enqueue ``messages`` (no delay); on Redis in one pipelined round trip.

    ``RedisBroker.enqueue`` costs one round trip per message, which caps a relay at a
    few thousand messages a second. Dramatiq has no public batch enqueue, so this does
    what ``RedisBroker.enqueue`` does, with every script call in one pipeline
    (``app.redis_dispatch``). The same pipeline then publishes each
    queue's name on the wake-up channel, so idle workers fetch at once instead of at
    the end of their poll back-off (``workers/wakeup.py``).
    """
    if not isinstance(broker, RedisBroker):
        for message in messages:
            broker.enqueue(message)
        return
    sent = []
    for message in messages:
        # Each enqueue needs an id of its own in Redis, as RedisBroker.enqueue gives it.
        message = message.copy(options={"redis_message_id": str(uuid.uuid4())})
        broker.emit_before("enqueue", message, None)
        sent.append(message)

    def fill(pipeline: Pipeline) -> None:
        for message in sent:
            redis_id = message.options["redis_message_id"]
            dispatch(broker, pipeline, "enqueue", message.queue_name, redis_id, message.encode())
        # After the enqueues, in pipeline order: a woken worker's fetch finds the messages.
        for queue in dict.fromkeys(message.queue_name for message in sent):
            pipeline.publish(wake_channel(broker.namespace), queue)

    redis_dispatch.execute(broker, fill)
    for message in sent:
        broker.emit_after("enqueue", message, None)
