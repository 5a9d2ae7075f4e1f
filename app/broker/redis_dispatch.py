"""Dramatiq's Redis operations, many in one pipeline.

``RedisBroker`` runs each operation (enqueue, fetch, ack, …) as one call of its Lua
``dispatch`` script: a round trip each. The relay enqueues a batch of messages and a
worker acks a batch of finished ones, each in one pipelined round trip, so both call
the script here with the arguments ``RedisBroker._dispatch`` gives it (Dramatiq 2.2).
``tests/integration/test_broker_internals.py`` fails if an upgrade changes the layout.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from dramatiq.brokers.redis import RedisBroker
from dramatiq.common import current_millis
from redis.client import Pipeline
from redis.exceptions import NoScriptError


def dispatch(
    broker: RedisBroker, pipeline: Pipeline, command: str, queue_name: str, *args: str | bytes
) -> None:
    """Queue one call of the broker's ``dispatch`` script on ``pipeline``.

    The call may run Dramatiq's maintenance pass, with the broker's own chance: the
    pass that gives a dead worker's unacked messages back to their queue.
    """
    script_args = [
        command,
        current_millis(),
        queue_name,
        broker.broker_id,
        broker.heartbeat_timeout,
        broker.dead_message_ttl,
        broker._should_do_maintenance(command),
        broker._max_unpack_size(),  # type: ignore[no-untyped-call]
        *args,
    ]
    pipeline.evalsha(broker.scripts["dispatch"].sha, 1, broker.namespace, *script_args)


def execute(
    broker: RedisBroker, fill: Callable[[Pipeline], None], *, transaction: bool = False
) -> list[Any]:
    """Send the commands ``fill`` queues on a pipeline, in one round trip; with
    ``transaction``, wrapped in MULTI/EXEC (Redis runs them with nothing in between).

    Script calls go by hash (EVALSHA): redis-py would otherwise send SCRIPT EXISTS,
    a round trip of its own, before every pipeline holding one. A Redis that lacks the
    script (restarted, or SCRIPT FLUSH) refuses every call of it; the script is then
    loaded and the pipeline filled and sent once more.
    """
    for attempt in range(2):
        pipeline = broker.client.pipeline(transaction=transaction)
        fill(pipeline)
        try:
            return pipeline.execute()
        except NoScriptError:
            if attempt:
                raise
            broker.client.script_load(broker.scripts["dispatch"].script)
    raise AssertionError("unreachable")
