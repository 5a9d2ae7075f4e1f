"""Brokers from a URL, and the actors of every registered job on them."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import dramatiq
from dramatiq.brokers.stub import StubBroker
from dramatiq.middleware import Middleware, TimeLimit
from sqlalchemy import Engine

from jobplane import registry
from jobplane.registry import JobSpec
from jobplane.settings import Settings
from jobplane.timeouts import RedisTimeouts
from jobplane.workers import context
from jobplane.workers.lifecycle import TaskLifecycle

#: Dramatiq's own TimeLimit default (10 min) must never apply silently: every message
#: the relay publishes carries its task's limit; this only covers a message without one.
FALLBACK_TIME_LIMIT_MS = 4 * 3600 * 1000


#: After this long without a fetch from a worker's consumer, Redis hands the messages it
#: had taken to other workers (Dramatiq's default: 60 s). Shorter means a killed
#: worker's prefetched messages run sooner; an alive but busy worker's may be handed
#: out too, which the claim makes harmless (the copy finds its task taken).
REDIS_HEARTBEAT_TIMEOUT_MS = 15_000

#: Per million Redis commands, how many also run Dramatiq's maintenance: the pass that
#: hands a dead worker's unacked messages to the others once its heartbeat is older
#: than the timeout above. Dramatiq's default (1,000: 0.1%) left them waiting 4–40 s
#: beyond the timeout in the chaos runs, idle consumers fetching ~10 times a second;
#: 1% makes that wait a few seconds, for a pass that costs little when nobody died.
REDIS_MAINTENANCE_CHANCE = 10_000


class UnsupportedBrokerURL(ValueError):
    """The broker URL's scheme is not memory://, redis:// or amqp://."""


def make_broker(
    url: str,
    middleware: list[Middleware] | None = None,
    *,
    timeouts: RedisTimeouts | None = None,
) -> dramatiq.Broker:
    """A broker for ``url`` with exactly ``middleware`` (none of Dramatiq's defaults).

    A Redis broker's connections get ``timeouts`` (default: ``RedisTimeouts()``); the
    wake-up listener and the ack sender use the same pool, so they get them too.

    Dramatiq's Retries, AgeLimit, Callbacks and Pipelines are left out on purpose:
    retries and delays live in the database, and a platform job must not be retried
    a second time by the broker.
    """
    middleware = list(middleware or [])
    scheme = url.split(":", 1)[0]
    if scheme == "memory":
        return StubBroker(middleware=middleware)
    if scheme in ("redis", "rediss", "unix"):
        # Its idle consumers are woken by the relay's publishes instead of polling.
        import redis

        from jobplane.workers.wakeup import WakeableRedisBroker

        options = (timeouts or RedisTimeouts()).connection_options()
        return WakeableRedisBroker(
            connection_pool=redis.ConnectionPool.from_url(url, **options),
            middleware=middleware,
            heartbeat_timeout=REDIS_HEARTBEAT_TIMEOUT_MS,
            maintenance_chance=REDIS_MAINTENANCE_CHANCE,
        )
    if scheme in ("amqp", "amqps"):
        from dramatiq.brokers.rabbitmq import RabbitmqBroker

        return RabbitmqBroker(url=url, middleware=middleware)
    raise UnsupportedBrokerURL(
        f"unsupported broker URL {url!r}: use memory://, redis:// or amqp://"
    )


def worker_broker(
    settings: Settings,
    engine_factory: Callable[[], Engine],
    *,
    broker: dramatiq.Broker | None = None,
    extra_queues: Iterable[str] = (),
) -> dramatiq.Broker:
    """A broker that runs every registered job, with the task lifecycle around each.

    ``broker`` reuses an existing broker (``jobplane dev`` shares its in-memory one
    with the relay); otherwise one is made from ``settings.broker_url``.
    """
    lifecycle = TaskLifecycle(engine_factory=engine_factory, settings=settings)
    # Order matters: the claim runs first, so a dropped message never starts a timer.
    middleware: list[Middleware] = [lifecycle, TimeLimit(time_limit=FALLBACK_TIME_LIMIT_MS)]
    if broker is None:
        broker = make_broker(
            settings.broker_url, middleware, timeouts=RedisTimeouts.from_settings(settings)
        )
    else:
        for item in middleware:
            broker.add_middleware(item)
    for spec in registry.all_jobs():
        declare_actor(broker, spec)
    for queue in extra_queues:
        broker.declare_queue(queue)
    dramatiq.set_broker(broker)
    return broker


def declare_actor(broker: dramatiq.Broker, spec: JobSpec) -> dramatiq.Actor[Any, Any]:
    """The actor that runs ``spec``: its message carries only the task id and dispatch."""

    def run(task_id: str, dispatch: int) -> None:  # noqa: ARG001 (read by the lifecycle)
        ctx = context.current_job()
        try:
            # The result goes to the task row (via the lifecycle), not to Dramatiq,
            # which would warn that it has no result backend to keep it in.
            ctx.result = spec.fn(**ctx.params)
        finally:
            ctx.on_body_end()  # from here on, a cancellation cannot interrupt this thread

    run.__name__ = run.__qualname__ = spec.name.replace(".", "_")
    return dramatiq.Actor(
        run,
        broker=broker,
        actor_name=spec.name,
        queue_name=spec.queue,
        priority=spec.priority,
        options={},
    )
