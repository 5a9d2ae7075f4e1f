"""Dramatiq's Redis operations, many in one pipeline.

``RedisBroker`` runs each operation (enqueue, fetch, ack, …) as one call of its Lua
``dispatch`` script: a round trip each. The relay enqueues a batch of messages and a
worker acks a batch of finished ones, each in one pipelined round trip, so both call
the script here with the arguments ``RedisBroker._dispatch`` gives it (Dramatiq 2.2).
It lives below ``outbox/`` and ``workers/``, which never import each other;
``tests/integration/test_broker_state.py`` fails if an upgrade changes the layout.
"""

from __future__ import annotations

from typing import Any

from dramatiq.brokers.redis import RedisBroker
from dramatiq.common import current_millis


def dispatch(
    broker: RedisBroker, pipeline: Any, command: str, queue_name: str, *args: str | bytes
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
    broker.scripts["dispatch"](keys=[broker.namespace], args=script_args, client=pipeline)
