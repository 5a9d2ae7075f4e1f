"""What the broker holds: has it lost its data since we last looked (its *epoch*),
and which of the messages we published does it no longer hold?

The relay reads the epoch with each batch it publishes; maintenance asks both
questions to find lost work. Each answer reads a broker-specific detail (the Redis key
layout, the stub broker's queues); ``tests/integration/test_broker_internals.py`` fails
loudly if a Dramatiq upgrade changes them.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import dramatiq
from dramatiq.brokers.redis import RedisBroker
from dramatiq.brokers.stub import StubBroker

from jobplane.store.recovery import Publication

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
    return decoded(client.get(EPOCH_KEY)) or ""


def decoded(value: bytes | str | None) -> str | None:
    """A Redis reply as text (the client gives bytes unless told to decode)."""
    return value.decode() if isinstance(value, bytes) else value


def redis_message_id(task_id: str, dispatch: int) -> str:
    """The id in Redis of the message publishing ``dispatch`` of ``task_id``.

    One per publication (a republication bumps the dispatch), so that whether Redis
    still holds a publication's message is one HEXISTS (``not_held``). Publishing the
    same dispatch twice (a relay died between publishing and committing) gives the same
    id: the second copy replaces the first one's data, and the id is queued twice; the
    worker that fetches it after the first copy was acked finds no data, and Dramatiq
    skips it with a warning ("Found 'None' message").
    """
    return f"{task_id}.{dispatch}"


def not_held(broker: dramatiq.Broker, published: Sequence[Publication]) -> list[Publication]:
    """Those of ``published`` whose message the broker provably no longer holds.

    Redis: a message is a field of ``<namespace>:<queue>.msgs``, keyed by its
    ``redis_message_id``, from its enqueue until its ack; also while a worker holds it
    unacked, and after that worker died, until Dramatiq's maintenance queues it again.
    One pipelined HEXISTS per message, all in one round trip. (jobplane enqueues
    nothing with a delay, so the delay queues need no look.)

    In-memory: nothing is ever lost while the broker lives, and a new broker is a new
    epoch; it cannot say which messages its workers hold, so none counts as lost.
    RabbitMQ (durable queues) can only say whether a queue holds any message: the
    messages of a queue that holds none count as lost.
    """
    if not published or isinstance(broker, StubBroker):
        return []
    if isinstance(broker, RedisBroker):
        pipeline = broker.client.pipeline(transaction=False)
        for task in published:
            key = f"{broker.namespace}:{task.queue}.msgs"
            pipeline.hexists(key, redis_message_id(task.task_id, task.dispatch))
        held = pipeline.execute()
        return [task for task, is_held in zip(published, held, strict=True) if not is_held]
    empty = {q for q in {t.queue for t in published} if not queue_holds_messages(broker, q)}
    return [task for task in published if task.queue in empty]


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
