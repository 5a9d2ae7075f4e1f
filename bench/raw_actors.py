"""Plain Dramatiq, no platform: the baseline ``bench/e2e.py`` compares jobplane against.

Run by ``python -m dramatiq bench.raw_actors --processes 1 --threads 8`` (Dramatiq's
default middleware, as a user of plain Dramatiq has it); the bench imports it too and
enqueues with ``raw_noop.send``. The actor does nothing but leave a trace in Redis in
one round trip: a counter, the time of the last message, and (for the latency run)
start time minus the enqueue time stamped in the message.
"""

from __future__ import annotations

import os
import time

import dramatiq
import redis
from dramatiq.brokers.redis import RedisBroker

REDIS_URL = os.environ.get("BENCH_RAW_REDIS_URL", "redis://127.0.0.1:6379/13")
QUEUE = "raw_bench"
COUNT_KEY = "bench:raw:count"
LAST_KEY = "bench:raw:last"
LATENCY_KEY = "bench:raw:latency"

broker = RedisBroker(url=REDIS_URL)
dramatiq.set_broker(broker)
counters = redis.Redis.from_url(REDIS_URL)


@dramatiq.actor(queue_name=QUEUE, max_retries=0)
def raw_noop(sent: float | None = None) -> None:
    """A no-op that records it ran (and, given ``sent``, how long after its enqueue)."""
    started = time.time()
    pipe = counters.pipeline(transaction=False)
    if sent is not None:
        pipe.rpush(LATENCY_KEY, started - sent)
    pipe.incr(COUNT_KEY)
    pipe.set(LAST_KEY, repr(started))
    pipe.execute()
