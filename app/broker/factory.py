"""Brokers from a URL, set up as jobplane needs them (the relay's and the workers')."""

from __future__ import annotations

import dramatiq
from dramatiq.brokers.stub import StubBroker
from dramatiq.middleware import Middleware

from jobplane.timeouts import RedisTimeouts

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

        from jobplane.broker.consumer_wakeup import WakeableRedisBroker

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
