"""Idle Redis consumers are woken by the relay's publishes (``jobplane.broker.consumer_wakeup``).

Each test uses a broker namespace of its own: pub/sub channels are shared by every
database of a Redis server, so another test run's relay could otherwise wake these
consumers and make the timings below meaningless.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future

import pytest
import redis
from dramatiq.broker import Consumer, MessageProxy
from dramatiq.brokers.redis import RedisBroker
from dramatiq.brokers.stub import StubBroker

from jobplane.broker import state as broker_state
from jobplane.broker.consumer_wakeup import WakeableRedisBroker, ack_after
from jobplane.broker.enqueue import enqueue_all
from jobplane.broker.factory import make_broker
from jobplane.broker.wake_listener import WakeupListener
from tests.conftest import free_port, noop_message, wait_until

#: The idle timeout of the consumer woken by a publish: a poll would come this late.
LONG_TIMEOUT_MS = 5_000
#: The idle timeout of consumers that nothing wakes.
SHORT_TIMEOUT_MS = 200


@pytest.fixture
def namespace() -> str:
    return f"jobplane-test-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def broker(redis_url: str, namespace: str) -> Iterator[WakeableRedisBroker]:
    broker = WakeableRedisBroker(url=redis_url, namespace=namespace)
    broker.declare_queue("default")
    broker.declare_queue("reports")
    yield broker
    broker.close()
    broker.client.close()


@pytest.fixture
def relay_broker(redis_url: str, namespace: str) -> Iterator[RedisBroker]:
    """Another broker object on the same Redis, as the relay process has."""
    broker = RedisBroker(url=redis_url, namespace=namespace)
    broker.declare_queue("default")
    broker.declare_queue("reports")
    yield broker
    broker.client.close()


@pytest.fixture
def consumer_factory(broker: WakeableRedisBroker) -> Iterator[Callable[..., Consumer]]:
    """Consumers of ``broker``, listening before they are returned; closed at the end."""
    made: list[Consumer] = []

    def make(queue: str, timeout: int) -> Consumer:
        consumer = broker.consume(queue, timeout=timeout)
        made.append(consumer)
        assert broker.wakeups.listening.wait(10), "the wake-up listener never subscribed"
        return consumer

    yield make
    for consumer in made:
        consumer.close()


def test_make_broker_gives_redis_urls_the_wakeable_broker(redis_url: str) -> None:
    broker = make_broker(redis_url)
    try:
        assert isinstance(broker, WakeableRedisBroker)
    finally:
        broker.close()
        broker.client.close()  # type: ignore[attr-defined]


def test_a_published_message_reaches_an_idle_consumer_long_before_its_poll(
    consumer_factory: Callable[..., Consumer], relay_broker: RedisBroker
) -> None:
    # Given an idle consumer of an empty queue, which would poll again only after 5 s
    consumer = consumer_factory("default", LONG_TIMEOUT_MS)
    sent = noop_message()

    # When the relay enqueues a message while the consumer waits
    publisher = threading.Timer(0.2, enqueue_all, (relay_broker, [sent]))
    started = time.monotonic()
    publisher.start()
    received: MessageProxy | None = None
    deadline = started + 2.0
    while received is None and time.monotonic() < deadline:
        received = next(consumer)
    elapsed = time.monotonic() - started
    publisher.join()

    # Then the consumer returns it well before its poll would have fired
    assert received is not None, f"no message after {elapsed:.2f} s"
    assert received.message_id == sent.message_id
    assert elapsed < 2.0
    consumer.ack(received)


def test_acks_sent_in_the_background_free_the_prefetch_slot_and_the_message(
    broker: WakeableRedisBroker, relay_broker: RedisBroker
) -> None:
    # Given a consumer that may hold one message at a time, and two messages queued
    consumer = broker.consume("default", prefetch=1, timeout=LONG_TIMEOUT_MS)
    first, second = noop_message(), noop_message()
    enqueue_all(relay_broker, [first, second])
    received = next(consumer)
    assert received is not None and received.message_id == first.message_id

    # When the first is acked (the ack returns before it reaches Redis)
    started = time.monotonic()
    consumer.ack(received)
    following = None
    while following is None and time.monotonic() < started + 2.0:
        following = next(consumer)

    # Then the sent ack frees the slot at once: the second comes long before a poll
    assert following is not None and following.message_id == second.message_id
    assert time.monotonic() - started < 2.0
    # And closing the consumer sends the ack still queued: Redis holds neither message
    consumer.ack(following)
    consumer.close()
    assert not broker_state.queue_holds_messages(relay_broker, "default")


def test_an_ack_given_a_future_waits_for_it(
    broker: WakeableRedisBroker, relay_broker: RedisBroker
) -> None:
    # Given a fetched message whose ack must wait for its task's outcome to be committed
    consumer = broker.consume("default", prefetch=1, timeout=LONG_TIMEOUT_MS)
    enqueue_all(relay_broker, [noop_message()])
    received = next(consumer)
    assert received is not None
    committed: Future[bool] = Future()
    assert ack_after(broker, received, committed) is True

    # When the worker thread acks it, Redis still holds it: nothing is sent yet
    consumer.ack(received)
    assert broker.acks.flush()
    assert broker_state.queue_holds_messages(relay_broker, "default") is True

    # Then the commit releases the ack
    committed.set_result(True)
    wait_until(
        lambda: not broker_state.queue_holds_messages(relay_broker, "default"),
        timeout=5,
        what="the ack to reach Redis",
    )
    consumer.close()


def test_other_brokers_leave_the_wait_for_the_outcome_to_the_caller() -> None:
    assert ack_after(StubBroker(), MessageProxy(noop_message()), Future()) is False


def test_an_idle_consumer_returns_none_after_its_timeout(
    consumer_factory: Callable[..., Consumer],
) -> None:
    # Given an idle consumer of an empty queue, and nothing published
    consumer = consumer_factory("default", SHORT_TIMEOUT_MS)

    # When it is asked for the next message
    started = time.monotonic()
    received = next(consumer)
    elapsed = time.monotonic() - started

    # Then it returns None after about its timeout, so Dramatiq's loop keeps turning
    assert received is None
    assert SHORT_TIMEOUT_MS / 1000 * 0.9 <= elapsed < 2.0


def test_a_wake_for_another_queue_returns_no_message(
    consumer_factory: Callable[..., Consumer], relay_broker: RedisBroker
) -> None:
    # Given an idle consumer of the empty queue "default"
    consumer = consumer_factory("default", SHORT_TIMEOUT_MS)

    # When the relay enqueues a message on "reports" while the consumer waits
    publisher = threading.Timer(0.05, enqueue_all, (relay_broker, [noop_message("reports")]))
    started = time.monotonic()
    publisher.start()
    received = next(consumer)
    elapsed = time.monotonic() - started
    publisher.join()

    # Then the consumer returns None at its timeout, and "reports" keeps its message
    assert received is None
    assert elapsed >= SHORT_TIMEOUT_MS / 1000 * 0.9
    assert broker_state.queue_holds_messages(relay_broker, "reports") is True


def test_consumers_still_poll_while_the_wake_up_channel_is_unreachable(
    broker: WakeableRedisBroker,
    relay_broker: RedisBroker,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Given a broker whose listener cannot reach its server (nothing listens on the port)
    unreachable = redis.ConnectionPool(host="127.0.0.1", port=free_port(), socket_timeout=1)
    broker.wakeups = WakeupListener(unreachable, "jobplane-test:jobplane-wake")
    consumer = broker.consume("default", timeout=SHORT_TIMEOUT_MS)
    try:
        # When a message is enqueued (its wake-up goes unheard)
        sent = noop_message()
        enqueue_all(relay_broker, [sent])

        # Then the consumer still returns it, at its next poll
        received = wait_until(lambda: next(consumer), timeout=5, what="a message")
        assert received.message_id == sent.message_id
        consumer.ack(received)
        # and the listener says why it is not listening, and keeps retrying
        wait_until(
            lambda: "consumers poll until it is back" in caplog.text,
            timeout=5,
            what="a warning",
        )
        assert not broker.wakeups.listening.is_set()
    finally:
        consumer.close()
