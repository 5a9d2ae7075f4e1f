"""Priority against real PostgreSQL and Redis: the relay's take order and its window,
and which parked task a freed concurrency slot wakes.

Redis lists are first in, first out: a task of priority 9 published behind 1,000 of
priority 0 starts after all of them. The relay therefore publishes the highest priority
first and keeps each queue's backlog on the broker within a window, holding the rest
back in the outbox, where a later task of higher priority overtakes them.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import dramatiq
import pytest
import redis
from dramatiq.brokers.stub import StubBroker
from sqlalchemy import Engine, select

from jobplane import service, store
from jobplane.models import Outbox, Task, utcnow
from jobplane.outbox.relay import Relay
from jobplane.registry import load_jobs
from jobplane.settings import Settings
from tests.conftest import outbox_rows, wait_until


@pytest.fixture(autouse=True)
def _jobs() -> None:
    load_jobs()


def submit(engine: Engine, settings: Settings, count: int = 1, **options: Any) -> list[str]:
    """Commit ``count`` demo.noop submissions; their task ids."""
    with engine.begin() as conn:
        submissions = [service.Submission(type="demo.noop", **options)] * count
        return service.submit_batch(conn, submissions, settings, utcnow())


def queued(client: redis.Redis, queue: str = "default") -> list[str]:
    """The task ids of ``queue``'s messages no worker has fetched, in the order they go."""
    ids = [i.decode() for i in client.lrange(f"dramatiq:{queue}", 0, -1)]
    data = client.hmget(f"dramatiq:{queue}.msgs", ids) if ids else []
    return [dramatiq.Message.decode(d).kwargs["task_id"] for d in data]


def fetch(broker: dramatiq.Broker, count: int, queue: str = "default") -> list[str]:
    """What a worker does: fetch ``count`` messages of ``queue`` (and ack them)."""
    consumer = broker.consume(queue, prefetch=count, timeout=100)
    try:
        messages = [wait_until(lambda: next(consumer), what="a message") for _ in range(count)]
        for message in messages:
            consumer.ack(message)
    finally:
        consumer.close()
    return [m.kwargs["task_id"] for m in messages]


def with_window(settings: Settings, window: int, **more: Any) -> Settings:
    return settings.model_copy(update={"relay_window": window, **more})


def test_the_relay_publishes_the_highest_priority_first_then_the_oldest(
    pg_engine: Engine, pg_settings: Settings, publisher: dramatiq.Broker, redis_client: redis.Redis
) -> None:
    # Given tasks of priorities 0, 9, -5 and 9, submitted in that order
    low = submit(pg_engine, pg_settings, 3, priority=0)
    first_urgent = submit(pg_engine, pg_settings, priority=9)
    lowest = submit(pg_engine, pg_settings, priority=-5)
    second_urgent = submit(pg_engine, pg_settings, priority=9)

    # When a relay publishes them
    assert Relay(pg_engine, publisher, pg_settings).drain() == 6

    # Then they are queued highest priority first, ties in the order they were submitted
    assert queued(redis_client) == first_urgent + second_urgent + low + lowest


def test_a_full_window_holds_rows_back_until_a_worker_fetches_and_the_urgent_go_first(
    pg_engine: Engine, pg_settings: Settings, publisher: dramatiq.Broker, redis_client: redis.Redis
) -> None:
    # Given a window of 5 and 12 tasks of priority 0
    relay = Relay(pg_engine, publisher, with_window(pg_settings, 5))
    low = submit(pg_engine, pg_settings, 12)

    # When the relay publishes what it may
    assert relay.drain() == 5

    # Then the broker holds 5 and the outbox keeps the other 7 (pending, not published)
    assert queued(redis_client) == low[:5]
    assert outbox_rows(pg_engine) == 7

    # When an urgent task comes, the window still full
    urgent = submit(pg_engine, pg_settings, priority=9)
    assert relay.drain() == 0

    # and a worker fetches 3 messages
    assert fetch(publisher, 3) == low[:3]

    # Then the relay fills the 3 places, the urgent task first
    assert relay.drain() == 3
    assert queued(redis_client) == low[3:5] + urgent + low[5:7]
    assert outbox_rows(pg_engine) == 5


def test_a_full_queue_does_not_starve_another_queue(
    pg_engine: Engine, pg_settings: Settings, publisher: dramatiq.Broker, redis_client: redis.Redis
) -> None:
    # Given batches of 10, a window of 3, 30 urgent tasks on "default" and then 4 of
    # priority 0 on "reports" (below every row of "default" in the take order)
    settings = with_window(pg_settings, 3, relay_batch_size=10)
    urgent = submit(pg_engine, pg_settings, 30, priority=9)
    reports = submit(pg_engine, pg_settings, 4, queue="reports")

    # When a relay publishes what it may
    taken = Relay(pg_engine, publisher, settings).drain()

    # Then each queue got its window's worth
    assert taken == 6
    assert queued(redis_client) == urgent[:3]
    assert queued(redis_client, "reports") == reports[:3]
    assert outbox_rows(pg_engine) == 28


@contextmanager
def relay_running(relay: Relay) -> Iterator[None]:
    thread = threading.Thread(target=relay.run, daemon=True)
    thread.start()
    try:
        yield
    finally:
        relay.stop()
        thread.join(timeout=10)
        relay.wakeup.close()


def test_rows_held_back_are_published_as_workers_fetch_without_a_notification(
    pg_engine: Engine, pg_settings: Settings, publisher: dramatiq.Broker, redis_client: redis.Redis
) -> None:
    # Given a window of 2 and a relay that, unless rows are held back, looks only when a
    # commit notifies it (or every 300 s)
    settings = with_window(pg_settings, 2, relay_poll_interval=300.0)
    relay = Relay(pg_engine, publisher, settings)
    task_ids = submit(pg_engine, pg_settings, 6)
    with relay_running(relay):
        wait_until(lambda: queued(redis_client) == task_ids[:2], what="the first window")

        # When workers fetch messages, and nothing is committed meanwhile
        fetched = fetch(publisher, 2)
        wait_until(lambda: len(queued(redis_client)) == 2, what="the window refilled")
        fetched += fetch(publisher, 2)
        wait_until(lambda: len(queued(redis_client)) == 2, what="the window refilled")

    # Then the window refilled each time, in order, until the outbox was empty
    assert fetched + queued(redis_client) == task_ids
    assert outbox_rows(pg_engine) == 0


def test_a_freed_slot_wakes_the_waiting_task_of_highest_priority_then_the_longest_waiting(
    any_engine: Engine, pg_settings: Settings
) -> None:
    # Given five tasks parked for a slot of their job type: priorities 0, 5, 5, 9, 0,
    # parked in that order
    settings = pg_settings.model_copy(update={"database_url": str(any_engine.url)})
    priorities = [0, 5, 5, 9, 0]
    task_ids = [submit(any_engine, settings, priority=p)[0] for p in priorities]
    with any_engine.begin() as conn:
        for second, task_id in enumerate(task_ids):
            parked_at = utcnow().replace(microsecond=0).replace(second=second)
            assert store.concurrency.park_task(conn, task_id, 1, parked_at)

    # When slots free up one by one
    woken = []
    for _ in task_ids:
        with any_engine.begin() as conn:
            woken += store.concurrency.wake_waiting(conn, "demo.noop", 1, utcnow())

    # Then the highest priority went first, and the longest-waiting among equals
    assert woken == [task_ids[3], task_ids[1], task_ids[2], task_ids[0], task_ids[4]]
    with any_engine.connect() as conn:
        assert conn.execute(select(Task.waiting_since)).scalars().all() == [None] * 5


def test_on_sqlite_and_the_in_memory_broker_the_order_and_the_window_hold_as_well(
    sqlite_engine: Engine, pg_settings: Settings
) -> None:
    # Given a window of 3 on the in-memory broker (``jobplane dev``), 4 tasks of
    # priority 0 and then an urgent one
    broker = StubBroker()
    low = submit(sqlite_engine, pg_settings, 4)
    urgent = submit(sqlite_engine, pg_settings, priority=9)

    # When a relay publishes what it may
    assert Relay(sqlite_engine, broker, with_window(pg_settings, 3)).drain() == 3

    # Then the urgent task goes first, and the outbox keeps the other 2
    queue = broker.queues["default"]
    messages = [dramatiq.Message.decode(queue.get_nowait()) for _ in range(queue.qsize())]
    assert [m.kwargs["task_id"] for m in messages] == urgent + low[:2]
    assert outbox_rows(sqlite_engine) == 2


def test_a_take_past_skipped_queues_is_the_take_over_the_other_queues(
    any_engine: Engine, pg_settings: Settings
) -> None:
    # Given due rows on four queues with priorities in no order, and some not due yet
    chance = random.Random(14)
    settings = pg_settings.model_copy(update={"database_url": str(any_engine.url)})
    for n in range(80):
        queue = chance.choice(["a", "b", "c", "d"])
        delay = 3600.0 if n % 9 == 0 else 0.0
        submit(
            any_engine, settings, queue=queue, priority=chance.randint(-2, 2), delay_seconds=delay
        )
    with any_engine.connect() as conn:
        rows = conn.execute(
            select(Outbox.id, Outbox.priority, Outbox.queue).where(Outbox.available_at <= utcnow())
        ).all()
    take_order = sorted(rows, key=lambda row: (-row.priority, row.id))

    # Then the rows taken past any set of queues, from any place, at any limit, are the
    # first ones in the take order of the other queues' due rows
    for skip in (("a",), ("b", "d"), ("a", "b", "c"), ("a", "b", "c", "d")):
        others = [(row.priority, row.id) for row in take_order if row.queue not in skip]
        for after in (None, *others[::7]):
            for limit in (1, 5, 100):
                expected = [row for row in others if after is None or after_place(row, after)]
                with any_engine.connect() as conn:
                    batch = store.outbox.lock_outbox_batch(
                        conn, utcnow(), limit, after=after, skip_queues=skip
                    )
                    conn.rollback()
                assert [(row.priority, row.id) for row in batch.rows] == expected[:limit]


def after_place(row: tuple[int, int], after: tuple[int, int]) -> bool:
    """Whether ``row`` (priority, id) comes after ``after`` in the take order."""
    return (-row[0], row[1]) > (-after[0], after[1])
