"""Acks of finished messages, sent in batches by a thread of their own.

Dramatiq's worker thread acks each message itself once the job is done: a Redis round
trip per job, during which the thread can take no other message (and, on a virtual
machine, waking up for the reply can cost milliseconds). By then the task's outcome
is committed in the database, so the ack only tells Redis not to deliver the message
again; here it is handed to one thread per worker process (a ``jobplane.drain.Drain``),
which sends every ack queued meanwhile in one pipelined round trip.

An ack that is lost (the process dies first) costs one redelivery, which the claim
turns away: the task is no longer pending.

The same thread gives messages back (Dramatiq's ``requeue``: from this consumer's
unacked set back to the queue) when their claim failed, so that they are delivered
again. Both survive any Redis error (a restart, a failover's READONLY, OOM, a timeout):
the batch is sent again with backoff until Redis takes it. Until then the messages hold
their consumers' prefetch slots, and nothing is lost: an unsent ack costs at most a
redelivery, an unsent give-back at most Dramatiq's requeue when this process ends.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from functools import partial

from dramatiq.brokers.redis import RedisBroker
from redis.client import Pipeline

from jobplane.broker import redis_dispatch
from jobplane.broker.redis_dispatch import dispatch
from jobplane.drain import Drain

logger = logging.getLogger(__name__)

#: First pause before sending again a batch that failed (Redis unreachable), in s.
MIN_RETRY_S = 0.1
#: Longest pause between two attempts, in s.
MAX_RETRY_S = 2.0
#: Longest wait for queued acks to be sent when a consumer closes, in s.
FLUSH_TIMEOUT_S = 5.0

#: Called once a message's ack has reached Redis.
OnAcked = Callable[[], None]


class _Ack:
    __slots__ = ("command", "queue_name", "redis_message_id", "on_acked")

    def __init__(
        self, command: str, queue_name: str, redis_message_id: str, on_acked: OnAcked
    ) -> None:
        self.command = command  #: Dramatiq's "ack", or "requeue" to give the message back
        self.queue_name = queue_name
        self.redis_message_id = redis_message_id
        self.on_acked = on_acked


def _fill(broker: RedisBroker, batch: list[_Ack], pipeline: Pipeline) -> None:
    for ack in batch:
        dispatch(broker, pipeline, ack.command, ack.queue_name, ack.redis_message_id)


class AckSender:
    """A daemon thread acking messages of a ``RedisBroker``, a pipeline per batch."""

    def __init__(self, broker: RedisBroker) -> None:
        self.broker = broker
        self._drain: Drain[_Ack] = Drain(handle=self._send, name="jobplane-acks")

    def ack(self, queue_name: str, redis_message_id: str, on_acked: OnAcked) -> None:
        """Queue the ack of a message fetched from ``queue_name``; returns at once."""
        self._drain.put(_Ack("ack", queue_name, redis_message_id, on_acked))

    def give_back(self, queue_name: str, redis_message_id: str, on_sent: OnAcked) -> None:
        """Queue the return of an unacked message to ``queue_name``; returns at once."""
        self._drain.put(_Ack("requeue", queue_name, redis_message_id, on_sent))

    def flush(self, timeout: float = FLUSH_TIMEOUT_S) -> bool:
        """Wait until the acks queued so far were sent; False if that took too long."""
        return self._drain.flush(timeout)

    def _send(self, batch: list[_Ack]) -> None:
        """Send ``batch`` until Redis takes it: this thread must never die."""
        failures = 0
        while True:
            try:
                redis_dispatch.execute(self.broker, partial(_fill, self.broker, batch))
                break
            except Exception as error:  # every Redis error passes; none may stop acks
                delay = min(MAX_RETRY_S, MIN_RETRY_S * 2 ** min(failures, 16))
                failures += 1
                log = logger.warning if failures == 1 or failures % 30 == 0 else logger.debug
                log(
                    "could not ack %d message(s), retrying until Redis takes them: %s",
                    len(batch),
                    error,
                )
                time.sleep(delay)
        for ack in batch:
            try:
                ack.on_acked()
            except Exception:
                logger.exception("after the ack of message %s", ack.redis_message_id)
