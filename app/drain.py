"""A thread that takes queued items in batches and hands each batch to one handler.

The shape of every background writer of a process (group commit, the ack sender):
callers ``put`` items and go on; one daemon thread takes everything queued meanwhile
and calls ``handle(batch)`` once for it. When the load is low a batch is one item and
the only cost is the hand-off between threads; when it is high, batches grow by
themselves. ``flush`` waits until what was queued before it has been handled; ``stop``
handles what is queued, then ends the thread.

What an item carries (a future to resolve, a callback) is the handler's business: the
drain adds nothing per item beyond the queue's own put and get.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from typing import Generic, TypeVar

logger = logging.getLogger(__name__)

T = TypeVar("T")


class DrainStopped(RuntimeError):
    """An item was put on a drain after its ``stop``."""


class _Marker:
    """Queued by ``flush`` and ``stop``: set once everything queued before it is handled."""

    __slots__ = ("done", "stops")

    def __init__(self, *, stops: bool) -> None:
        self.done = threading.Event()
        self.stops = stops


class Drain(Generic[T]):
    """One daemon thread handing batches of queued items to ``handle``.

    Parameters (keyword-only):
      handle: called on the drain's thread with each batch (a new list, in queue
        order). An exception it raises is logged and the drain goes on: a handler
        that must not lose items catches (or retries) its own failures.
      name: the thread's name (and the drain's, in errors and log lines).
      max_batch: most items in one batch (default None: everything queued).

    The thread starts at the first ``put``.
    """

    def __init__(
        self, *, handle: Callable[[list[T]], None], name: str, max_batch: int | None = None
    ) -> None:
        self.handle = handle
        self.name = name
        self.max_batch = max_batch
        self._queue: queue.SimpleQueue[T | _Marker] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._stopped = False

    @property
    def stopped(self) -> bool:
        """Whether ``stop`` was called: ``put`` refuses items from then on."""
        return self._stopped

    def put(self, item: T) -> None:
        """Queue ``item`` for the thread; returns at once. ``DrainStopped`` after ``stop``."""
        if self._stopped:
            raise DrainStopped(f"{self.name} is closed")
        self._queue.put(item)
        if self._thread is None:
            self._start()

    def empty(self) -> bool:
        """Whether nothing is queued (a batch may still be being handled)."""
        return self._queue.empty()

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until the items queued so far were handled; False after ``timeout`` s."""
        if self._thread is None:
            return True
        marker = _Marker(stops=False)
        self._queue.put(marker)
        return marker.done.wait(timeout)

    def stop(self, timeout: float | None = None) -> bool:
        """Refuse new items, handle those queued, end the thread (waiting up to
        ``timeout`` s, default: for as long as it takes); False if it still runs."""
        self._stopped = True
        self._queue.put(_Marker(stops=True))
        thread = self._thread
        if thread is None:
            return True
        thread.join(timeout)
        return not thread.is_alive()

    def _start(self) -> None:
        with self._start_lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while True:
            batch, markers = self._take()
            if batch:
                try:
                    self.handle(batch)
                except Exception:  # the thread outlives its handler's failures
                    logger.exception("%s: a batch of %d item(s) failed", self.name, len(batch))
            for marker in markers:
                marker.done.set()
            if markers and markers[-1].stops:
                return

    def _take(self) -> tuple[list[T], list[_Marker]]:
        """The next batch (waiting for its first entry) and the markers met on the way.

        Everything queued while the previous batch was handled joins this one, up to
        ``max_batch`` items or a stop."""
        batch: list[T] = []
        markers: list[_Marker] = []
        entry = self._queue.get()
        while True:
            if isinstance(entry, _Marker):
                markers.append(entry)
                if entry.stops:
                    break
            else:
                batch.append(entry)
                if len(batch) == self.max_batch:
                    break
            try:
                entry = self._queue.get_nowait()
            except queue.Empty:
                break
        return batch, markers
