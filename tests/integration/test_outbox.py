"""The outbox relay against real PostgreSQL and Redis: what it publishes, when, how often.

Invariant 1 (a message only for a committed row) and the relay's half of invariant 3
(a relay that dies or cannot reach the broker loses nothing).
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

import dramatiq
import psycopg
import pytest
import redis
from sqlalchemy import Engine, Row, select, text

from jobplane import service, store
from jobplane.broker import state as broker_state
from jobplane.broker.factory import make_broker
from jobplane.maintenance.leader import Elector
from jobplane.maintenance.rescuer import Rescuer
from jobplane.maintenance.runner import Maintenance
from jobplane.models import Task, utcnow
from jobplane.outbox.notifications import PostgresWakeup
from jobplane.outbox.relay import Relay
from jobplane.registry import load_jobs
from jobplane.settings import Settings
from tests.conftest import DEFAULT_MESSAGES, outbox_rows, row_counts, wait_until


class Rollback(Exception):
    """Raised inside a transaction to roll it back."""


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = utcnow()

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture(autouse=True)
def _jobs() -> None:
    load_jobs()


@pytest.fixture
def brokers() -> Iterator[list[dramatiq.Broker]]:
    """Brokers a test makes; their connections are closed at the end."""
    made: list[dramatiq.Broker] = []
    yield made
    for broker in made:
        broker.client.close()  # type: ignore[attr-defined]


@pytest.fixture
def new_broker(brokers: list[dramatiq.Broker], redis_url: str) -> Any:
    def make(url: str = redis_url) -> dramatiq.Broker:
        broker = make_broker(url)
        brokers.append(broker)
        return broker

    return make


def submit(engine: Engine, settings: Settings, count: int = 1, **options: Any) -> list[str]:
    """Commit ``count`` demo.noop submissions; their task ids."""
    with engine.begin() as conn:
        now = options.pop("now", None) or utcnow()
        submissions = [service.Submission(type="demo.noop", **options)] * count
        return service.submit_batch(conn, submissions, settings, now)


def published_messages(client: redis.Redis) -> list[dramatiq.Message[Any]]:
    return [dramatiq.Message.decode(data) for data in client.hvals(DEFAULT_MESSAGES)]


def tasks(engine: Engine) -> list[Row[Any]]:
    with engine.connect() as conn:
        return list(conn.execute(select(Task)).all())


def test_a_submission_whose_transaction_rolls_back_publishes_nothing(
    pg_engine: Engine, pg_settings: Settings, new_broker: Any, redis_client: redis.Redis
) -> None:
    # Given a submission whose transaction fails after the task was written
    with pytest.raises(Rollback), pg_engine.begin() as conn:
        row, created = service.submit(
            conn, service.Submission(type="demo.noop"), pg_settings, utcnow()
        )
        assert created and row is not None
        raise Rollback

    # When a relay drains the outbox
    broker = new_broker()
    taken = Relay(pg_engine, broker, pg_settings).drain()

    # Then nothing was written and nothing was published
    assert taken == 0
    assert row_counts(pg_engine) == {"tasks": 0, "outbox": 0, "task_logs": 0}
    assert broker_state.queue_holds_messages(broker, "default") is False
    assert redis_client.hlen(DEFAULT_MESSAGES) == 0
    assert redis_client.dbsize() == 0


def test_a_committed_submission_is_published_exactly_once_and_leaves_the_outbox(
    pg_engine: Engine, pg_settings: Settings, new_broker: Any, redis_client: redis.Redis
) -> None:
    # Given one committed submission
    (task_id,) = submit(pg_engine, pg_settings)
    broker = new_broker()
    relay = Relay(pg_engine, broker, pg_settings)

    # When the relay drains the outbox twice
    first, second = relay.drain(), relay.drain()

    # Then one message carries the task id and its dispatch number, once
    assert (first, second) == (1, 0)
    messages = published_messages(redis_client)
    assert [(m.actor_name, m.kwargs) for m in messages] == [
        ("demo.noop", {"task_id": task_id, "dispatch": 1})
    ]
    assert broker_state.queue_holds_messages(broker, "default") is True
    # and the outbox row is gone: that is what marks the pending task as published
    assert outbox_rows(pg_engine) == 0
    (task,) = tasks(pg_engine)
    assert task.status == "pending"


def test_a_delayed_submission_is_not_published_before_it_is_due(
    pg_engine: Engine, pg_settings: Settings, new_broker: Any, redis_client: redis.Redis
) -> None:
    # Given a submission delayed by a minute, and a relay on a clock the test moves
    clock = Clock()
    (task_id,) = submit(pg_engine, pg_settings, delay_seconds=60, now=clock.now)
    relay = Relay(pg_engine, new_broker(), pg_settings, clock=clock)

    # When the relay drains 59 s later
    clock.advance(59)
    early = relay.drain()

    # Then nothing is published yet and the outbox row waits
    assert early == 0
    assert redis_client.hlen(DEFAULT_MESSAGES) == 0
    assert outbox_rows(pg_engine) == 1

    # When it drains again once the delay has passed
    clock.advance(2)
    due = relay.drain()

    # Then the task is published
    assert due == 1
    assert [m.kwargs["task_id"] for m in published_messages(redis_client)] == [task_id]
    assert outbox_rows(pg_engine) == 0


def test_two_relays_draining_the_same_table_at_once_publish_each_row_once(
    pg_engine: Engine, pg_settings: Settings, new_broker: Any, redis_client: redis.Redis
) -> None:
    # Given 1,000 committed submissions and two relays taking small batches (with a
    # window that holds them all: no worker fetches)
    task_ids = submit(pg_engine, pg_settings, 1000)
    settings = pg_settings.model_copy(update={"relay_batch_size": 20, "relay_window": 1000})
    relays = [Relay(pg_engine, new_broker(), settings) for _ in range(2)]
    start = threading.Barrier(len(relays))
    errors: list[BaseException] = []

    def drain(relay: Relay) -> None:
        start.wait()
        try:
            relay.drain()
        except BaseException as error:  # reported by the main thread
            errors.append(error)

    # When both drain the outbox concurrently
    threads = [threading.Thread(target=drain, args=(relay,)) for relay in relays]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    # Then every task was published exactly once, and both relays did part of it
    assert errors == []
    assert sum(relay.published for relay in relays) == 1000
    assert all(relay.published > 0 for relay in relays)
    assert redis_client.hlen(DEFAULT_MESSAGES) == 1000
    published = Counter(m.kwargs["task_id"] for m in published_messages(redis_client))
    assert set(published) == set(task_ids)
    assert max(published.values()) == 1
    assert outbox_rows(pg_engine) == 0


def test_a_batch_says_when_the_next_row_not_yet_due_is_due(
    pg_engine: Engine, pg_settings: Settings
) -> None:
    # Given three rows due now and one due in a minute, one of the due rows held by
    # another relay's open batch
    now = utcnow()
    submit(pg_engine, pg_settings, 3, now=now)
    submit(pg_engine, pg_settings, delay_seconds=60, now=now)
    with pg_engine.connect() as other_relay:
        other_relay.begin()
        held = store.outbox.lock_outbox_batch(other_relay, now, 1)
        assert len(held.rows) == 1

        # When a relay locks a batch, and then (past it) another with nothing left
        with pg_engine.begin() as conn:
            batch = store.outbox.lock_outbox_batch(conn, now, 10)
            last = batch.rows[-1]
            empty = store.outbox.lock_outbox_batch(conn, now, 10, after=(last.priority, last.id))
        other_relay.rollback()

    # Then both say the delayed row's time: the held row is not waited for (that wait
    # would be 0: the relay would spin until the other relay commits)
    assert len(batch.rows) == 2
    assert empty.rows == []
    assert batch.next_due == empty.next_due == now + timedelta(seconds=60)


class PausingRelay(Relay):
    """A relay that stops after publishing its first batch, before committing it."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.holding = threading.Event()
        self.release = threading.Event()

    def _publish(self, rows: list[store.outbox.OutboxMessage]) -> str | None:
        epoch = super()._publish(rows)
        if not self.holding.is_set():
            self.holding.set()
            assert self.release.wait(timeout=30)
        return epoch


def test_a_relay_skips_the_rows_another_relay_is_publishing(
    pg_engine: Engine, pg_settings: Settings, new_broker: Any, redis_client: redis.Redis
) -> None:
    # Given 30 submissions and a relay holding a batch of 10 of them, uncommitted
    task_ids = submit(pg_engine, pg_settings, 30)
    settings = pg_settings.model_copy(update={"relay_batch_size": 10})
    slow = PausingRelay(pg_engine, new_broker(), settings)
    slow_thread = threading.Thread(target=slow.drain)
    slow_thread.start()
    try:
        assert slow.holding.wait(timeout=30)

        # When a second relay drains the outbox meanwhile
        other = Relay(pg_engine, new_broker(), settings)
        taken = other.drain()
    finally:
        slow.release.set()
        slow_thread.join(timeout=30)

    # Then it took only the 20 rows the first one did not hold, and each task has one message
    assert taken == 20
    assert (slow.published, other.published) == (10, 20)
    published = Counter(m.kwargs["task_id"] for m in published_messages(redis_client))
    assert sorted(published) == sorted(task_ids)
    assert set(published.values()) == {1}
    assert outbox_rows(pg_engine) == 0


def test_a_relay_whose_broker_is_down_keeps_the_rows_for_a_later_relay(
    pg_engine: Engine, pg_settings: Settings, new_broker: Any, redis_client: redis.Redis
) -> None:
    # Given 5 committed submissions and a relay whose broker cannot be reached
    task_ids = submit(pg_engine, pg_settings, 5)
    down = Relay(pg_engine, new_broker("redis://127.0.0.1:1/0"), pg_settings)

    # When it tries to publish them
    with pytest.raises(redis.ConnectionError):
        down.relay_once()
    down.close()

    # Then the rows are all still there: none counts as published
    assert outbox_rows(pg_engine) == 5
    assert down.published == 0

    # When a relay with a working broker runs later
    later = Relay(pg_engine, new_broker(), pg_settings)
    taken = later.drain()

    # Then it publishes every one of them, once
    assert taken == 5
    assert sorted(m.kwargs["task_id"] for m in published_messages(redis_client)) == sorted(task_ids)
    assert outbox_rows(pg_engine) == 0


def test_a_broker_that_loses_its_data_right_after_the_first_batch_gets_it_again(
    pg_engine: Engine, pg_settings: Settings, new_broker: Any, redis_client: redis.Redis
) -> None:
    # Given a backlog of 10 submissions waiting for a relay (beside a maintenance
    # leader) to start, and a Redis that loses its data just after the relay's first batch
    task_ids = submit(pg_engine, pg_settings, 10)
    settings = pg_settings.model_copy(update={"sweep_interval": 0.1, "relay_poll_interval": 0.1})
    broker = new_broker()

    class FlushedAfterFirstBatch(Relay):
        flushed = False

        def _publish(self, rows: list[store.outbox.OutboxMessage]) -> str | None:
            epoch = super()._publish(rows)
            if not self.flushed:
                redis_client.flushdb()
                self.flushed = True
            return epoch

    rescuer = Rescuer.from_settings(pg_engine, broker, settings)
    maintenance = Maintenance(Elector(pg_engine, role="relay"), [rescuer])
    relay = FlushedAfterFirstBatch(pg_engine, broker, settings)

    # When the relay runs, and the maintenance leader beside it
    threads = [threading.Thread(target=relay.run), threading.Thread(target=maintenance.run)]
    for thread in threads:
        thread.start()
    try:
        # Then the rescuer notices the loss and every task is on the broker again
        wait_until(
            lambda: relay.flushed and redis_client.hlen(DEFAULT_MESSAGES) == 10,
            timeout=10,
            what="the lost messages to be published again",
        )
    finally:
        relay.stop()
        maintenance.stop()
        for thread in threads:
            thread.join(timeout=10)
        relay.wakeup.close()
    assert relay.flushed
    assert rescuer.counts["republished_after_broker_loss"] == 10
    published = {
        m.kwargs["task_id"]: m.kwargs["dispatch"] for m in published_messages(redis_client)
    }
    assert published == dict.fromkeys(task_ids, 2)


@contextmanager
def relay_running(
    engine: Engine, settings: Settings, broker: dramatiq.Broker, wakeup: PostgresWakeup
) -> Iterator[tuple[Relay, threading.Thread]]:
    """A relay running in a thread of its own, which polls only every 300 s: NOTIFY
    (through ``wakeup``) is what wakes it. Stopped, and its LISTEN closed, at the end."""
    slow = settings.model_copy(update={"relay_poll_interval": 300.0})
    relay = Relay(engine, broker, slow, wakeup=wakeup)
    thread = threading.Thread(target=relay.run, daemon=True)
    thread.start()
    try:
        yield relay, thread
    finally:
        relay.stop()
        thread.join(timeout=10)
        wakeup.close()


def test_a_row_committed_before_the_relay_first_listens_is_published_at_once(
    pg_engine: Engine, pg_settings: Settings, new_broker: Any, redis_client: redis.Redis
) -> None:
    # Given a relay, and a submission committed between its first batch and its LISTEN
    # (nobody was notified)
    committed: list[str] = []

    class LateListener(PostgresWakeup):
        def _listen(self) -> bool:
            if not committed:
                committed.extend(submit(pg_engine, pg_settings))
            return super()._listen()

    with relay_running(pg_engine, pg_settings, new_broker(), LateListener(pg_engine)):
        # When the relay runs, then the row is published long before the next poll
        wait_until(lambda: committed and outbox_rows(pg_engine) == 0, what="the row published")
        assert [m.kwargs["task_id"] for m in published_messages(redis_client)] == committed


def test_a_listen_connection_that_fails_is_closed_and_the_relay_listens_again(
    pg_engine: Engine, pg_settings: Settings, new_broker: Any
) -> None:
    # Given a relay whose LISTEN connection fails once while it waits, the connection
    # still open (as after a timeout); it polls until it listens again
    failed: list[psycopg.Connection[tuple[object, ...]]] = []
    pids: list[int] = []

    class FailsOnce(PostgresWakeup):
        def _wait_for_notification(
            self, conn: psycopg.Connection[tuple[object, ...]], timeout: float
        ) -> None:
            if not failed:
                pids.append(conn.info.backend_pid)
                failed.append(conn)
                raise psycopg.OperationalError("injected")
            super()._wait_for_notification(conn, timeout)

    wakeup = FailsOnce(pg_engine)
    settings = pg_settings.model_copy(update={"relay_poll_interval": 0.2})
    relay = Relay(pg_engine, new_broker(), settings, wakeup=wakeup)
    thread = threading.Thread(target=relay.run, daemon=True)
    thread.start()
    try:
        # Then that connection is closed and its server process gone (not left open
        # until collected), and the relay listens on a new one
        wait_until(lambda: failed and failed[0].closed, what="the failed connection closed")
        wait_until(
            lambda: not server_process_exists(pg_engine, pids[0]),
            timeout=10,
            what="its server process to exit",
        )
        wait_until(
            lambda: wakeup._conn is not None and not wakeup._conn.closed,
            what="the relay to listen again",
        )
    finally:
        relay.stop()
        thread.join(timeout=10)
        wakeup.close()


def server_process_exists(engine: Engine, pid: int) -> bool:
    with engine.connect() as conn:
        found = conn.execute(
            text("SELECT count(*) FROM pg_stat_activity WHERE pid = :pid"), {"pid": pid}
        ).scalar_one()
    return bool(found)


def test_a_relay_waiting_for_notifications_stops_when_asked_not_at_its_next_poll(
    pg_engine: Engine, pg_settings: Settings, new_broker: Any
) -> None:
    # Given a relay, listening and idle
    wakeup = PostgresWakeup(pg_engine)
    with relay_running(pg_engine, pg_settings, new_broker(), wakeup) as (relay, thread):
        wait_until(lambda: wakeup._conn is not None, what="the relay to listen")
        # When it is asked to stop (what its SIGTERM handler does)
        relay.stop()
        # Then it stops at once, not at its next poll
        wait_until(lambda: not thread.is_alive(), timeout=10, what="the relay to stop")
