"""How many long-lived requests one API process holds at once: event streams, long polls.

Each is cheap alone, but each holds a connection and reads the database again and
again for as long as it lasts; a bound per process keeps a crowd of them (or one client
opening them in a loop) from taking the database's capacity from everything else. The
one past the bound is answered 503 with ``Retry-After`` at once.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from jobplane.domain import JobplaneError


class TooMany(JobplaneError):
    """This API process holds as many of these requests as it may; try again shortly."""


class TooManyStreams(TooMany):
    """This API process serves as many event streams as it may; try again shortly."""


class TooManyWaits(TooMany):
    """This API process holds as many long polls as it may; try again shortly."""


class Slots:
    """At most ``limit`` holders at once; ``take`` raises ``error`` when none is free.

    Thread-safe: a sync route takes a slot in a thread of the pool, and gives it back
    on the event loop when its response ends.
    """

    def __init__(self, limit: int, *, error: type[TooMany], what: str, setting: str) -> None:
        self.limit = limit
        self.error = error
        self.what = what  #: what is held, plural, for the message
        self.setting = setting  #: the setting that raises ``limit``, for the message
        self.held = 0
        self._lock = threading.Lock()

    def take(self) -> None:
        with self._lock:
            if self.held >= self.limit:
                raise self.error(
                    f"this API process already holds {self.limit} {self.what}, the most"
                    f" it may ({self.setting}); try again shortly"
                )
            self.held += 1

    def give_back(self) -> None:
        with self._lock:
            self.held -= 1

    @contextmanager
    def one(self) -> Iterator[None]:
        """Hold a slot for the block."""
        self.take()
        try:
            yield
        finally:
            self.give_back()


class HeldStream(StreamingResponse):
    """A streaming answer that gives its slot back when it ends, however it ends (a
    client gone away ends it with an error in ``send``, not inside its generator)."""

    def __init__(self, slots: Slots, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.slots = slots

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.slots.give_back()
