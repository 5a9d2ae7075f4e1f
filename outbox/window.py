"""The relay's window: how many more messages each queue may be given.

Redis lists are first in, first out: a task of high priority published behind a long
backlog starts after all of it. So the relay keeps each queue's backlog on the broker
short and leaves the rest in the outbox, where it takes the highest priority first: a
task waits behind at most a window of lower-priority messages already published (plus
what the workers prefetched), however long the backlog.
"""

from __future__ import annotations

from collections.abc import Mapping

import dramatiq

from jobplane.broker.backlog import unfetched_counts


class Window:
    """At most ``size`` messages of a queue on the broker that no worker has fetched.

    ``size`` is ``Settings.relay_window`` (default 500). Every queue has the same
    window; a paused queue would be one whose window is 0.

    Counts come from the broker: read with the batch's enqueues (no round trip of their
    own), and read again only when the count last seen leaves less room than a batch
    wants. Workers only lower a count; another relay's publishes raise it unseen, which
    is why the bound with R relays is R windows.
    """

    def __init__(self, broker: dramatiq.Broker, *, size: int) -> None:
        self.broker = broker
        self.size = size
        #: Per queue, its unfetched messages as last seen (None: not known).
        self._seen: dict[str, int] = {}

    def size_for(self, queue: str) -> int:
        """The window of ``queue``, in messages."""
        return self.size

    def room(self, wanted: Mapping[str, int]) -> dict[str, int]:
        """How many more messages each queue of ``wanted`` may be given now.

        ``wanted``: how many rows of each queue the batch has. The broker is read (one
        round trip for all of them) for the queues whose last seen count leaves less
        room than that, or none was seen.
        """
        stale = [
            queue
            for queue, count in wanted.items()
            if queue not in self._seen or self._seen[queue] + count > self.size_for(queue)
        ]
        self._seen.update(unfetched_counts(self.broker, stale))
        return {queue: max(0, self.size_for(queue) - self._seen[queue]) for queue in wanted}

    def seen(self, counts: Mapping[str, int]) -> None:
        """Record ``counts``, read right after a publish."""
        self._seen.update(counts)

    def forget(self) -> None:
        """Read every count afresh (after a batch that failed: its publish may or may not
        have reached the broker)."""
        self._seen.clear()
