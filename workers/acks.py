"""Acks of finished messages, sent in batches by a thread of their own.

Dramatiq's worker thread acks each message itself once the job is done: a Redis round
trip per job, during which the thread can take no other message (and, on a virtual
machine, waking up for the reply can cost milliseconds). By then the task's outcome
is committed in the database, so the ack only tells Redis not to deliver the message
again; here it is handed to one thread per worker process, which sends every ack
queued meanwhile in one pipelined round trip.

An ack that is lost (the process dies first) costs one redelivery, which the claim
turns away: the task is no longer pending (invariant 2).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from functools import partial

import redis
from dramatiq.brokers.redis import RedisBroker
from redis.client import Pipeline

from app import redis_dispatch
from app.redis_dispatch import dispatch

logger = logging.getLogger(__name__)

#: Pause before sending again acks that failed (Redis unreachable), in s.
RETRY_S = 1.0
#: Longest wait for queued acks to be sent when a consumer closes, in s.
FLUSH_TIMEOUT_S = 5.0

#: Called once a message's ack has reached Redis.
OnAcked = Callable[[], None]


class _Ack:
    __slots__ = ("queue_name", "redis_message_id", "on_acked")

    def __init__(self, queue_name: str, redis_message_id: str, on_acked: OnAcked) -> None:
        self.queue_name = queue_name
        self.redis_message_id = redis_message_id
        self.on_acked = on_acked


def _fill(broker: RedisBroker, batch: list[_Ack], pipeline: Pipeline) -> None:
    for ack in batch:
        dispatch(broker, pipeline, "ack", ack.queue_name, ack.redis_message_id)


class AckSender:
    """A daemon thread acking messages of a ``RedisBroker``, a pipeline per batch."""

    def __init__(self, broker: RedisBroker) -> None:
        self.broker = broker
        self._queue: queue.SimpleQueue[_Ack | threading.Event] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()

    def ack(self, queue_name: str, redis_message_id: str, on_acked: OnAcked) -> None:
        """Queue the ack of a message fetched from ``queue_name``; returns at once."""
        self._queue.put(_Ack(queue_name, redis_message_id, on_acked))
        if self._thread is None:
            self._start()

    def flush(self, timeout: float = FLUSH_TIMEOUT_S) -> bool:
        """Wait until the acks queued so far were sent; False if that took too long."""
        if self._thread is None:
            return True
        done = threading.Event()
        self._queue.put(done)
        return done.wait(timeout)

    def _start(self) -> None:
        with self._start_lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="jobplane-acks", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while True:
            batch: list[_Ack] = []
            flushes: list[threading.Event] = []
            entry = self._queue.get()
            while True:
                if isinstance(entry, threading.Event):
                    flushes.append(entry)
                else:
                    batch.append(entry)
                try:
                    entry = self._queue.get_nowait()
                except queue.Empty:
                    break
            if batch:
                self._send(batch)
            for done in flushes:
                done.set()

    def _send(self, batch: list[_Ack]) -> None:
        while True:
            try:
                redis_dispatch.execute(self.broker, partial(_fill, self.broker, batch))
                break
            except redis.ConnectionError as error:
                # As Dramatiq's worker does: retry until Redis is back. Until then the
                # messages hold their consumers' prefetch slots.
                logger.warning("could not ack %d messages, retrying: %s", len(batch), error)
                time.sleep(RETRY_S)
        for ack in batch:
            ack.on_acked()
