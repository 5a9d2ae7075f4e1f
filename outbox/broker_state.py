"""What the relay needs to know about a broker beyond Dramatiq's public API.

Two questions: has the broker lost its data since we last looked (its *epoch*), and
does it hold any message of a queue? Each answer reads a broker-specific detail, kept
here in one place; ``tests/integration/test_broker_state.py`` fails loudly if a
Dramatiq upgrade changes what these functions rely on.
"""

from __future__ import annotations

import uuid

import dramatiq
from dramatiq.brokers.stub import StubBroker

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
