"""What ``jobplane.broker`` reads from and writes to a broker, checked against real brokers.

These functions rely on details outside Dramatiq's public API (the Redis key layout,
the stub broker's queues). If a Dramatiq upgrade changes them, these tests fail loudly
instead of maintenance silently republishing, or never republishing, lost work.
"""

from __future__ import annotations

from collections.abc import Iterator

import dramatiq
import pytest
import redis
from dramatiq.broker import Consumer, MessageProxy
from dramatiq.brokers.stub import StubBroker

from jobplane.broker import state as broker_state
from jobplane.broker.backlog import unfetched_counts
from jobplane.broker.consumer_wakeup import flush_acks
from jobplane.broker.enqueue import enqueue_all
from jobplane.broker.factory import make_broker
from jobplane.store.recovery import Publication
from tests.conftest import DEFAULT_MESSAGES, noop_message, wait_until


@pytest.fixture
def redis_broker(redis_url: str) -> Iterator[dramatiq.Broker]:
    broker = make_broker(redis_url)
    yield broker
    broker.client.close()  # type: ignore[attr-defined]


def enqueue(broker: dramatiq.Broker, queue: str = "default") -> dramatiq.Message[object]:
    broker.declare_queue(queue)
    return broker.enqueue(noop_message(queue))


def receive(consumer: Consumer) -> MessageProxy:
    """The next message of ``consumer`` (its ``next`` returns None while it polls)."""
    return wait_until(lambda: next(consumer), timeout=10, what="a message")  # type: ignore[no-any-return]


def test_a_redis_queue_holds_a_message_from_enqueue_until_it_is_acked(
    redis_broker: dramatiq.Broker,
) -> None:
    # Given an empty queue
    redis_broker.declare_queue("default")
    assert broker_state.queue_holds_messages(redis_broker, "default") is False

    # When a message is enqueued
    sent = enqueue(redis_broker)

    # Then the queue holds it
    assert broker_state.queue_holds_messages(redis_broker, "default") is True

    # When a consumer takes it, it still does: it is being processed, not yet acked
    consumer = redis_broker.consume("default", timeout=100)
    try:
        message = receive(consumer)
        assert message.message_id == sent.message_id
        assert broker_state.queue_holds_messages(redis_broker, "default") is True

        # When the consumer acks it
        consumer.ack(message)
    finally:
        consumer.close()

    # Then the queue holds nothing
    assert broker_state.queue_holds_messages(redis_broker, "default") is False


def test_a_redis_queue_is_told_apart_from_the_other_queues(
    redis_broker: dramatiq.Broker,
) -> None:
    # Given a message on queue "reports"
    enqueue(redis_broker, "reports")

    # Then only "reports" holds a message
    assert broker_state.queue_holds_messages(redis_broker, "reports") is True
    assert broker_state.queue_holds_messages(redis_broker, "default") is False


def test_the_redis_epoch_stays_the_same_until_redis_loses_its_data(
    redis_broker: dramatiq.Broker, redis_url: str, redis_client: redis.Redis
) -> None:
    # Given the epoch of a Redis broker
    epoch = broker_state.broker_epoch(redis_broker)

    # Then it is the same at every call, and for every process on that Redis
    assert broker_state.broker_epoch(redis_broker) == epoch
    other = make_broker(redis_url)
    try:
        assert broker_state.broker_epoch(other) == epoch
    finally:
        other.client.close()  # type: ignore[attr-defined]
    assert redis_client.get(broker_state.EPOCH_KEY) == epoch.encode()

    # When Redis loses its data
    redis_client.flushdb()

    # Then the epoch is a new one, stable from then on
    new_epoch = broker_state.broker_epoch(redis_broker)
    assert new_epoch != epoch
    assert broker_state.broker_epoch(redis_broker) == new_epoch


def test_a_stub_queue_holds_a_message_from_enqueue_until_it_is_acked() -> None:
    # Given an in-memory broker with an empty queue
    broker = StubBroker()
    broker.declare_queue("default")
    assert broker_state.queue_holds_messages(broker, "default") is False
    assert broker_state.queue_holds_messages(broker, "never-declared") is False

    # When a message is enqueued
    sent = enqueue(broker)

    # Then the queue holds it, also while a consumer processes it
    assert broker_state.queue_holds_messages(broker, "default") is True
    consumer = broker.consume("default", timeout=100)
    try:
        message = receive(consumer)
        assert message.message_id == sent.message_id
        assert broker_state.queue_holds_messages(broker, "default") is True

        # When the consumer acks it
        consumer.ack(message)
    finally:
        consumer.close()

    # Then the queue holds nothing
    assert broker_state.queue_holds_messages(broker, "default") is False


def test_redis_counts_a_queues_messages_until_a_worker_fetches_them(
    redis_broker: dramatiq.Broker,
) -> None:
    # Given three messages on "default", one on "reports", and a queue never used
    for queue in ("default", "default", "default", "reports"):
        enqueue(redis_broker, queue)

    # Then each queue counts its own, in one read
    assert unfetched_counts(redis_broker, ["default", "reports", "never-used"]) == {
        "default": 3,
        "reports": 1,
        "never-used": 0,
    }

    # When a consumer fetches two of "default" (not yet acked)
    consumer = redis_broker.consume("default", prefetch=2, timeout=100)
    try:
        fetched = [receive(consumer) for _ in range(2)]

        # Then only the one no worker has fetched counts
        assert unfetched_counts(redis_broker, ["default"]) == {"default": 1}
        for message in fetched:
            consumer.ack(message)
    finally:
        consumer.close()
    assert unfetched_counts(redis_broker, ["default"]) == {"default": 1}


def test_a_pipelined_batch_says_how_many_messages_each_queue_holds_after_it(
    redis_broker: dramatiq.Broker,
) -> None:
    # Given a message already on "default"
    enqueue(redis_broker)

    # When two more go to "default" and one to "reports" in one round trip
    unfetched: dict[str, int] = {}
    batch = [noop_message(), noop_message(), noop_message("reports")]
    redis_broker.declare_queue("reports")
    enqueue_all(redis_broker, batch, unfetched=unfetched)

    # Then it says what a separate read says
    assert unfetched == {"default": 3, "reports": 1}
    assert unfetched_counts(redis_broker, ["default", "reports"]) == unfetched


def test_a_stub_queue_counts_its_messages_until_a_worker_fetches_them() -> None:
    # Given an in-memory broker with two messages on "default"
    broker = StubBroker()
    enqueue(broker)
    enqueue(broker)
    assert unfetched_counts(broker, ["default", "never-declared"]) == {
        "default": 2,
        "never-declared": 0,
    }

    # When a consumer fetches one
    consumer = broker.consume("default", timeout=100)
    try:
        consumer.ack(receive(consumer))
    finally:
        consumer.close()

    # Then one counts
    assert unfetched_counts(broker, ["default"]) == {"default": 1}


def test_the_stub_epoch_is_one_per_broker_object() -> None:
    # Given an in-memory broker
    broker = StubBroker()
    epoch = broker_state.broker_epoch(broker)

    # Then its epoch does not change while it lives
    assert broker_state.broker_epoch(broker) == epoch

    # and a new broker (a restarted process, which lost the messages) has another
    assert broker_state.broker_epoch(StubBroker()) != epoch


@pytest.mark.parametrize("scripts", ["loaded", "flushed"])
def test_a_pipelined_batch_reaches_redis_as_ordinary_messages(
    redis_broker: dramatiq.Broker, scripts: str
) -> None:
    # Given three messages enqueued in one pipelined round trip (also when Redis lost
    # Dramatiq's scripts, as after a restart: the batch loads them and goes again)
    redis_broker.declare_queue("default")
    if scripts == "flushed":
        redis_broker.client.script_flush()  # type: ignore[attr-defined]
    sent = [noop_message(task_id=f"t{i}", time_limit=5000) for i in range(3)]
    enqueue_all(redis_broker, sent)

    # Then a consumer receives each, intact, in order, and acks them away
    consumer = redis_broker.consume("default", prefetch=3, timeout=100)
    received = [receive(consumer) for _ in sent]
    assert [m.kwargs["task_id"] for m in received] == ["t0", "t1", "t2"]
    assert all(m.options["time_limit"] == 5000 for m in received)
    assert broker_state.queue_holds_messages(redis_broker, "default") is True
    for message in received:
        consumer.ack(message)
    consumer.close()
    assert broker_state.queue_holds_messages(redis_broker, "default") is False


def test_redis_holds_a_publication_from_enqueue_until_its_ack_and_says_which_it_lost(
    redis_broker: dramatiq.Broker, redis_client: redis.Redis
) -> None:
    # Given three publications enqueued as the relay does, under their own message ids
    redis_broker.declare_queue("default")
    published = [Publication(f"t{i}", 1, "default") for i in range(3)]
    enqueue_all(
        redis_broker,
        [
            noop_message(
                task_id=p.task_id, redis_message_id=broker_state.redis_message_id(p.task_id, 1)
            )
            for p in published
        ],
    )
    assert broker_state.not_held(redis_broker, published) == []

    # When a consumer takes the first (it is held unacked, as by a worker that died) and
    # the second's message is deleted
    consumer = redis_broker.consume("default", timeout=100)
    try:
        first = receive(consumer)
        assert first.kwargs["task_id"] == "t0"
        redis_client.hdel(DEFAULT_MESSAGES, broker_state.redis_message_id("t1", 1))

        # Then only the second counts as lost; so does another dispatch of the third
        later = Publication("t2", 2, "default")
        assert broker_state.not_held(redis_broker, [*published, later]) == [published[1], later]

        # When the first is acked (the ack thread sends it), it is gone too
        consumer.ack(first)
        flush_acks(redis_broker)
        assert broker_state.not_held(redis_broker, published) == published[:2]
    finally:
        consumer.close()


def test_an_in_memory_broker_never_counts_a_publication_as_lost() -> None:
    # (it lives and dies with its process: a new one is a new epoch)
    assert broker_state.not_held(StubBroker(), [Publication("t0", 1, "default")]) == []
