"""The relay's window: how many more messages each queue may be given.

Redis lists are first in, first out: a task of high priority published behind a long
backlog starts after all of it. So the relay keeps each queue's backlog on the broker
short and leaves the rest in the outbox, where it takes the highest priority first: a
task waits behind at most a window of lower-priority messages already published (plus
what the workers prefetched), however long the backlog.
"""

from __future__ import annotations

from collections.abc import Collection

import dramatiq

from jobplane.broker.backlog import unfetched_counts


class Window:
    """At most ``size`` messages of a queue on the broker that no worker has fetched.

    ``size`` is ``Settings.relay_window`` (default 500). Every queue has the same
    window; a paused queue would be one whose window is 0.
    """

    def __init__(self, broker: dramatiq.Broker, *, size: int) -> None:
        self.broker = broker
        self.size = size

    def size_for(self, queue: str) -> int:
        """The window of ``queue``, in messages."""
        return self.size

    def room(self, queues: Collection[str]) -> dict[str, int]:
        """How many more messages each of ``queues`` may be given now: one read of the
        broker for all of them."""
        held = unfetched_counts(self.broker, queues)
        return {queue: max(0, self.size_for(queue) - held[queue]) for queue in queues}
