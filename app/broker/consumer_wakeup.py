"""Idle Redis consumers that fetch when the relay publishes, instead of at their next poll.

Dramatiq's Redis consumer polls: after an empty fetch it sleeps a back-off growing up
to the worker timeout, so the first job after a quiet spell waits for the next poll
before a worker even looks. The relay publishes the queue names of every batch on a
pub/sub channel (``jobplane.broker.enqueue.enqueue_all``); one listener thread per
broker (so per worker process, ``jobplane.broker.wake_listener``) turns them into
``threading.Event``s, on which the consumers wait instead of sleeping. Pub/sub is only
a hint: while it is down, consumers fetch every ``timeout`` ms as before, so a message
is never lost, only picked up later.

The same consumers hand their acks to a thread of their own (``ack_sender``); a
message can be given back instead of acked (``give_back``) or acked only once its
task's outcome is committed (``ack_after``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from concurrent.futures import Future, wait
from functools import partial
from typing import Any

import redis
from dramatiq.broker import Broker, Consumer, MessageProxy
from dramatiq.brokers.redis import RedisBroker
from dramatiq.common import q_name
from dramatiq.errors import ConnectionClosed

from jobplane.broker.ack_sender import FLUSH_TIMEOUT_S, AckSender
from jobplane.broker.channels import wake_channel
from jobplane.broker.wake_listener import WakeupListener

logger = logging.getLogger(__name__)

#: The idle timeout given to Dramatiq's own consumer, in ms: it caps the sleep after an
#: empty fetch, making it ~0; the consumer waits on its event instead.
INNER_TIMEOUT_MS = 1
#: The attribute ``ack_after`` sets on a message: its ack waits for this future.
_ACK_AFTER = "_jobplane_ack_after"


def ack_after(broker: Broker, message: MessageProxy, done: Future[Any]) -> bool:
    """Have ``message`` acked only once ``done`` is resolved, instead of right away.

    For a job's completion, which its worker thread then need not wait for: the ack
    still follows the commit, so a message is never acked before its task's outcome is
    recorded. Only a ``WakeableRedisBroker``'s consumers do this; for another broker
    this returns False, and the caller must wait for ``done`` itself.
    """
    if not isinstance(broker, WakeableRedisBroker):
        return False
    setattr(message, _ACK_AFTER, done)
    return True


#: The attribute ``give_back`` sets on a message: its "ack" returns it to the queue.
_GIVE_BACK = "_jobplane_give_back"


def give_back(broker: Broker, message: MessageProxy) -> None:
    """Have ``message`` delivered again instead of acked once Dramatiq is done with it.

    For a message whose claim failed: its body did not run, so its task must stay
    reachable. A ``WakeableRedisBroker``'s consumer puts it back on its queue (through
    the ack thread, which rides out Redis errors). Another broker gets a copy enqueued
    now, and the original is acked as usual; if that enqueue fails too, the task is
    republished by maintenance as a published task that was never claimed.
    """
    if isinstance(broker, WakeableRedisBroker):
        setattr(message, _GIVE_BACK, True)
        return
    try:
        broker.enqueue(message.copy())
    except Exception as error:
        logger.warning("could not give message %s back: %s", message.message_id, error)


def flush_acks(broker: Broker) -> None:
    """Wait (a few seconds at most) for the acks and give-backs queued so far."""
    if isinstance(broker, WakeableRedisBroker) and not broker.acks.flush():
        logger.warning("stopping with acks not sent: those messages are delivered again")


class WakeableConsumer(Consumer):
    """Dramatiq's Redis consumer, waiting on an event between empty fetches.

    ``__next__`` returns None at the latest ``timeout`` ms after an empty fetch, as
    Dramatiq's worker loop needs to notice a shutdown; everything else is delegated.
    """

    def __init__(
        self,
        inner: Consumer,
        *,
        listener: WakeupListener,
        acks: AckSender,
        queue: str,
        timeout: int,
    ) -> None:
        self._inner = inner
        self._listener = listener
        self._acks = acks
        #: What acks wait for (``ack_after``); the consumer's close waits for them.
        self._awaited: set[Future[Any]] = set()
        self._queue = queue
        self._timeout_s = timeout / 1000
        self._event = listener.register(queue)

    def __next__(self) -> MessageProxy | None:
        # Clear before fetching: a wake that comes during the fetch is kept for the wait.
        self._event.clear()
        try:
            message = next(self._inner)
            if message is None and self._event.wait(self._timeout_s):
                message = next(self._inner)
        except redis.RedisError as error:
            # Dramatiq's consumer turns only ConnectionError into ConnectionClosed; a
            # fetch that timed out (the server vanished) is the same loss of the
            # connection, and Dramatiq then restarts the consumer in a few seconds.
            raise ConnectionClosed(error) from None  # type: ignore[no-untyped-call]
        return message

    def ack(self, message: MessageProxy) -> None:
        """Hand the ack to the broker's ``AckSender``: the worker thread goes on at once.

        Until the ack is sent the message keeps its prefetch slot, as Dramatiq counts
        a message held until its ack returns. A message given to ``ack_after`` is
        handed over once its future is resolved."""
        # A message given back is "acked" by being put back on its queue.
        command = self._acks.give_back if getattr(message, _GIVE_BACK, False) else self._acks.ack
        send = partial(
            command,
            self._queue,
            message.options["redis_message_id"],
            partial(self._acked, message),
        )
        awaited: Future[Any] | None = getattr(message, _ACK_AFTER, None)
        if awaited is None:
            send()
            return
        self._awaited.add(awaited)

        def resolved(future: Future[Any]) -> None:
            self._awaited.discard(future)
            send()

        awaited.add_done_callback(resolved)

    def _acked(self, message: MessageProxy) -> None:
        was_full = self._at_prefetch_limit()
        # What Dramatiq's own ack does once Redis answered: the message no longer
        # counts against the consumer's prefetch.
        self._inner.queued_message_ids.discard(message.message_id)  # type: ignore[attr-defined]
        if was_full:
            self._event.set()

    def nack(self, message: MessageProxy) -> None:
        was_full = self._at_prefetch_limit()
        self._inner.nack(message)
        if was_full:
            self._event.set()

    def _at_prefetch_limit(self) -> bool:
        """Whether the consumer holds all the messages it may: it fetches nothing more
        until one is acked, so that ack is worth a wake-up (a wake-up on every ack would
        cost an empty fetch per job). Reads Dramatiq's consumer's
        own counters; without them, every ack wakes it."""
        held = getattr(self._inner, "outstanding_message_count", None)
        limit = getattr(self._inner, "prefetch", None)
        return held is None or limit is None or held >= limit

    def requeue(self, messages: Iterable[MessageProxy]) -> None:
        self._inner.requeue(messages)

    def close(self) -> None:
        self._listener.unregister(self._queue, self._event)
        wait(list(self._awaited), timeout=FLUSH_TIMEOUT_S)
        if not self._acks.flush():  # a message not acked is delivered again, then dropped
            logger.warning("closing consumer of %r with acks not sent", self._queue)
        self._inner.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class WakeableRedisBroker(RedisBroker):
    """A ``RedisBroker`` whose idle consumers are woken by the relay's publishes.

    Takes ``RedisBroker``'s keyword arguments. Messages, keys and scripts are
    Dramatiq's own, so any ``RedisBroker`` (the relay's) can enqueue for it.
    """

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)  # type: ignore[no-untyped-call]  # Dramatiq's is unannotated
        self.wakeups = WakeupListener(self.client.connection_pool, wake_channel(self.namespace))
        self.acks = AckSender(self)

    def consume(self, queue_name: str, prefetch: int = 1, timeout: int = 5000) -> Consumer:
        """A consumer of ``queue_name``; ``timeout`` (ms) is its longest idle wait.

        Delay queues (``<queue>.DQ``) keep Dramatiq's polling: nothing wakes them.
        """
        if q_name(queue_name) != queue_name:
            return super().consume(queue_name, prefetch, timeout)
        self.wakeups.start()
        inner = super().consume(queue_name, prefetch, timeout=INNER_TIMEOUT_MS)
        return WakeableConsumer(
            inner, listener=self.wakeups, acks=self.acks, queue=queue_name, timeout=timeout
        )

    def close(self) -> None:
        self.wakeups.stop()
        super().close()
