"""The thread that turns the relay's wake-up publishes into events consumers wait on.

One per broker (so per worker process), subscribed to the wake-up channel
(``jobplane.broker.channels``) on a connection of the broker's pool. Every error is
ridden out with backoff: while it is unsubscribed, consumers poll as Dramatiq's do.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import redis

logger = logging.getLogger(__name__)

#: How long the listener blocks reading the channel before it checks for a stop, in s.
STOP_CHECK_S = 0.25
#: Pause before the first retry of a failed subscription, in s; doubled per failure.
MIN_RETRY_S = 0.5
#: Longest pause between two attempts to subscribe, in s.
MAX_RETRY_S = 30.0


class WakeupListener:
    """A daemon thread that sets the events of a queue's consumers when it is published.

    ``connection_pool`` is the broker's (same server, same settings); the thread holds
    one connection of it while subscribed. It starts at the first ``start()``.
    """

    def __init__(self, connection_pool: redis.ConnectionPool, channel: str) -> None:
        self._pool = connection_pool
        self._channel = channel
        self._events: dict[str, set[threading.Event]] = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        #: Failed attempts since the last successful subscription (sets the back-off).
        self._failures = 0
        #: Set while subscribed, once every consumer has been woken for what it missed.
        self.listening = threading.Event()

    def register(self, queue: str) -> threading.Event:
        """A new event, set whenever ``queue`` is published (until ``unregister``)."""
        event = threading.Event()
        with self._lock:
            self._events.setdefault(queue, set()).add(event)
        return event

    def unregister(self, queue: str, event: threading.Event) -> None:
        with self._lock:
            self._events.get(queue, set()).discard(event)

    def start(self) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="jobplane-wakeup", daemon=True
                )
                self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        """Unsubscribe and end the thread (waiting up to ``timeout`` s for it)."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                self._listen()
            except Exception as error:  # the thread must outlive any failure
                delay = min(MIN_RETRY_S * 2**self._failures, MAX_RETRY_S)
                self._failures += 1
                logger.warning(
                    "wake-up channel %s unavailable (%s): consumers poll until it is "
                    "back; retrying in %.1f s",
                    self._channel,
                    error,
                    delay,
                )
                self._stopping.wait(delay)

    def _listen(self) -> None:
        pubsub = redis.client.PubSub(self._pool)  # what Redis.pubsub() makes
        try:
            pubsub.subscribe(self._channel)
            while not self._stopping.is_set():
                message = pubsub.get_message(timeout=STOP_CHECK_S)
                if message is not None:
                    self._handle(message)
        finally:
            self.listening.clear()
            pubsub.close()

    def _handle(self, message: dict[str, Any]) -> None:
        if message["type"] == "subscribe":
            # (Re)subscribed, also after redis-py reconnected on its own: whatever was
            # published while we were not listening wakes nobody, so wake everyone once.
            self._wake(None)
            self._failures = 0
            self.listening.set()
        elif message["type"] == "message":
            data = message["data"]
            self._wake(data.decode() if isinstance(data, bytes) else str(data))

    def _wake(self, queue: str | None) -> None:
        """Set the events of ``queue``'s consumers (of every queue if None).

        A queue no consumer here reads is ignored. Delay queues are never named:
        the relay publishes no delayed message (delays live in the database).
        """
        with self._lock:
            if queue is None:
                events = [event for group in self._events.values() for event in group]
            else:
                events = list(self._events.get(queue, ()))
        for event in events:
            event.set()
