"""Loss detection against real PostgreSQL and Redis.

The rescuer's backstop for a broker that lost some messages but kept its epoch (a crash
with AOF ``everysec``, a failover to a lagging replica, messages deleted by hand), and
the relay's epoch check, which closes the race between a relay's batch and the
maintenance leader's rescuer handling a loss.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import dramatiq
import pytest
import redis
from sqlalchemy import Connection, Engine, select

from jobplane.broker.factory import make_broker
from jobplane.maintenance.rescuer import Rescuer
from jobplane.models import Outbox
from jobplane.outbox.relay import BrokerEpochChanged, Relay
from jobplane.registry import load_jobs
from jobplane.settings import Settings
from tests.conftest import (
    DEFAULT_MESSAGES,
    DEFAULT_QUEUE,
    outbox_rows,
    wait_until,
    waiting_on_a_lock,
)
from tests.integration.test_broker_internals import receive
from tests.integration.test_outbox import Clock, published_messages, submit


@pytest.fixture(autouse=True)
def _jobs() -> None:
    load_jobs()


def queued(client: redis.Redis) -> dict[str, int]:
    """Task id → dispatch of every message Redis holds on queue "default"."""
    return {m.kwargs["task_id"]: m.kwargs["dispatch"] for m in published_messages(client)}


def delete_messages(client: redis.Redis, task_ids: set[str]) -> None:
    """Delete the messages of ``task_ids`` from Redis, leaving every other key alone."""
    for field, data in client.hgetall(DEFAULT_MESSAGES).items():
        if dramatiq.Message.decode(data).kwargs["task_id"] in task_ids:
            client.hdel(DEFAULT_MESSAGES, field)
            client.lrem(DEFAULT_QUEUE, 0, field)


def outbox_dispatches(engine: Engine) -> dict[str, int]:
    with engine.connect() as conn:
        rows = conn.execute(select(Outbox.task_id, Outbox.dispatch))
        return {row.task_id: row.dispatch for row in rows}


@pytest.mark.parametrize("check_batch", [2000, 3], ids=["one-sweep", "walked-in-pages"])
def test_a_task_whose_message_was_deleted_is_republished_while_its_queue_still_holds_others(
    pg_engine: Engine,
    pg_settings: Settings,
    publisher: dramatiq.Broker,
    redis_client: redis.Redis,
    check_batch: int,
) -> None:
    # Given 20 tasks published by a relay (which recorded the broker's epoch),
    # never claimed, one of them held unacked by a consumer (as by a worker that died)
    clock = Clock()
    settings = pg_settings.model_copy(
        update={"unclaimed_after": 60, "unclaimed_check_batch": check_batch}
    )
    task_ids = submit(pg_engine, settings, 20, now=clock.now)
    rescuer = Rescuer.from_settings(pg_engine, publisher, settings, clock=clock)
    relay = Relay(pg_engine, publisher, settings, clock=clock)
    assert relay.drain() == 20
    consumer = publisher.consume("default", timeout=100)
    try:
        held = receive(consumer).kwargs["task_id"]

        # When half of the queue's messages are deleted, the epoch key kept, and the
        # tasks are more than a minute past their due time
        lost = set([t for t in task_ids if t != held][:10])
        delete_messages(redis_client, lost)
        clock.advance(61)

        # Then, within 1 + 20 // check_batch sweeps, exactly the deleted ones are
        # published again (a new dispatch each), and not one of those still queued
        sweeps = 1 + len(task_ids) // check_batch
        found = sum(rescuer.sweep()["republished_unclaimed"] for _ in range(sweeps))
        assert found == len(lost)
        assert outbox_dispatches(pg_engine) == dict.fromkeys(lost, 2)
        assert rescuer.counts["republished_after_broker_loss"] == 0

        # and the backlog still queued is never republished, however long it waits
        for _ in range(3):
            clock.advance(600)
            assert rescuer.sweep()["republished_unclaimed"] == 0

        # When the relay publishes the republished tasks
        assert relay.drain() == len(lost)

        # Then the queue holds a message of every task, of its current dispatch, and
        # later sweeps find nothing more to republish
        kept = set(task_ids) - lost
        assert queued(redis_client) == {**dict.fromkeys(kept, 1), **dict.fromkeys(lost, 2)}
        clock.advance(600)
        assert rescuer.sweep()["republished_unclaimed"] == 0
    finally:
        consumer.close()


class SteppedRelay(Relay):
    """A relay whose first batch stops where a test says, until released.

    ``stop_at`` is "published" (messages enqueued, the epoch not yet checked) or
    "checked" (the epoch checked and locked, the transaction not yet committed).
    """

    def __init__(self, *args: Any, stop_at: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.stop_at = stop_at
        self.stopped = threading.Event()
        self.release = threading.Event()
        self.error: BaseException | None = None

    def _stop(self, where: str) -> None:
        if where == self.stop_at and not self.stopped.is_set():
            self.stopped.set()
            assert self.release.wait(timeout=30)

    def _publish(self, rows: Any) -> str | None:
        epoch = super()._publish(rows)
        self._stop("published")
        return epoch

    def _count_under_epoch(self, conn: Connection, ids: list[int], epoch: str | None) -> None:
        super()._count_under_epoch(conn, ids, epoch)
        self._stop("checked")

    def drain_in_thread(self) -> threading.Thread:
        def drain() -> None:
            try:
                self.drain()
            except BaseException as error:  # reported by the test
                self.error = error

        thread = threading.Thread(target=drain)
        thread.start()
        assert self.stopped.wait(timeout=30)
        return thread


@pytest.fixture
def two_relays(
    pg_engine: Engine, pg_settings: Settings, redis_url: str
) -> Iterator[Callable[[str], tuple[SteppedRelay, Rescuer, Relay]]]:
    """Relay A (stepped), and relay B beside the maintenance leader's rescuer (which has
    recorded the broker's epoch), each on a broker object of its own."""
    brokers: list[dramatiq.Broker] = []

    def make(stop_at: str) -> tuple[SteppedRelay, Rescuer, Relay]:
        broker_a, broker_b = make_broker(redis_url), make_broker(redis_url)
        brokers.extend((broker_a, broker_b))
        rescuer_b = Rescuer.from_settings(pg_engine, broker_b, pg_settings)
        rescuer_b.sweep()
        relay_a = SteppedRelay(pg_engine, broker_a, pg_settings, stop_at=stop_at)
        return relay_a, rescuer_b, Relay(pg_engine, broker_b, pg_settings)

    yield make
    for broker in brokers:
        broker.client.close()  # type: ignore[attr-defined]


def test_a_batch_published_before_a_loss_that_another_relay_handles_first_is_published_again(
    pg_engine: Engine,
    pg_settings: Settings,
    redis_client: redis.Redis,
    two_relays: Callable[[str], tuple[SteppedRelay, Rescuer, Relay]],
) -> None:
    # Given relay A holding a batch of 10 tasks it has published, not yet committed
    relay_a, rescuer_b, relay_b = two_relays("published")
    task_ids = submit(pg_engine, pg_settings, 10)
    thread = relay_a.drain_in_thread()

    # When Redis loses its data, and the leader's rescuer records the new epoch and
    # republishes everything published before, all before relay A commits
    redis_client.flushdb()
    assert rescuer_b.sweep()["republished_after_broker_loss"] == 0  # A's are not yet
    relay_a.release.set()
    thread.join(timeout=30)

    # Then relay A's batch rolls back: its rows stay in the outbox
    assert isinstance(relay_a.error, BrokerEpochChanged)
    assert outbox_rows(pg_engine) == 10

    # and once a relay publishes them, every task is on the broker
    assert relay_b.drain() == 10
    assert queued(redis_client) == dict.fromkeys(task_ids, 1)


def test_a_batch_committed_while_another_relay_handles_a_loss_is_republished_by_it(
    pg_engine: Engine,
    pg_settings: Settings,
    redis_client: redis.Redis,
    two_relays: Callable[[str], tuple[SteppedRelay, Rescuer, Relay]],
) -> None:
    # Given relay A holding a batch of 10 tasks it has published and checked against
    # the recorded epoch, not yet committed
    relay_a, rescuer_b, relay_b = two_relays("checked")
    task_ids = submit(pg_engine, pg_settings, 10)
    thread = relay_a.drain_in_thread()

    # When Redis loses its data and the leader's rescuer sees it, while relay A commits
    redis_client.flushdb()
    swept: list[int] = []
    sweeping = threading.Thread(
        target=lambda: swept.append(rescuer_b.sweep()["republished_after_broker_loss"])
    )
    sweeping.start()
    # (the rescuer's swap of the epoch waits for relay A's batch)
    wait_until(lambda: waiting_on_a_lock(pg_engine), what="the swap to wait")
    relay_a.release.set()
    thread.join(timeout=30)
    sweeping.join(timeout=30)

    # Then relay A's batch is committed, and the rescuer republished its tasks too
    assert relay_a.error is None and relay_a.published == 10
    assert swept == [10]

    # and once a relay publishes them, every task is on the broker again
    assert relay_b.drain() == 10
    assert queued(redis_client) == dict.fromkeys(task_ids, 2)


def test_a_relay_whose_broker_lost_its_data_since_the_last_sweep_commits_nothing_until_one(
    pg_engine: Engine, pg_settings: Settings, publisher: dramatiq.Broker, redis_client: redis.Redis
) -> None:
    # Given a relay that published 5 tasks, and the maintenance leader's rescuer
    first = submit(pg_engine, pg_settings, 5)
    relay = Relay(pg_engine, publisher, pg_settings)
    rescuer = Rescuer.from_settings(pg_engine, publisher, pg_settings)
    assert relay.drain() == 5

    # When Redis loses its data and 5 more tasks come before the rescuer's next sweep
    redis_client.flushdb()
    second = submit(pg_engine, pg_settings, 5)

    # Then the relay's batch under the lost epoch rolls back
    with pytest.raises(BrokerEpochChanged):
        relay.drain()
    assert outbox_rows(pg_engine) == 5
    # and once the sweep republished the first 5, the batch that follows publishes all 10
    rescuer.sweep()
    relay.drain()
    assert rescuer.counts["republished_after_broker_loss"] == 5
    assert queued(redis_client) == {**dict.fromkeys(first, 2), **dict.fromkeys(second, 1)}
    assert outbox_rows(pg_engine) == 0
