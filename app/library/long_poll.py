"""``Client.wait``'s plan: long polls of ``GET /api/tasks/{taskId}?wait=S`` until the
task is terminal or the caller's timeout passes, and what its end state means."""

from __future__ import annotations

import math
import time
from typing import Any

from jobplane import domain
from jobplane.library import calls
from jobplane.library.results import Task

#: The longest the API holds one request (``?wait=`` takes whole seconds up to this).
MAX_HOLD = 60
#: Seconds between reads while the API answers at once: the last second of a timeout,
#: or an API that does not hold requests. Doubling each time up to ``MAX_PAUSE``.
FIRST_PAUSE = 0.05
MAX_PAUSE = 1.0


class LongPoll:
    """The requests that wait for one task, and the pauses between them.

    ``timeout``: seconds in all, None for no limit. ``next_call()`` gives the request to
    send, ``pause(took)`` the seconds to sleep after a non-terminal answer that took
    ``took`` seconds, or raises ``TimeoutError`` once the time is up; ``pause_after``
    the seconds to sleep after the API said it cannot answer now.
    """

    def __init__(self, task_id: str, timeout: float | None) -> None:
        self.task_id = task_id
        self.timeout = timeout
        self._deadline = math.inf if timeout is None else time.monotonic() + timeout
        self._hold = 0
        self._pause = FIRST_PAUSE

    def next_call(self) -> calls.Call[Task]:
        # Whole seconds, never past the deadline; under a second left: plain reads.
        remaining = self._deadline - time.monotonic()
        self._hold = MAX_HOLD if remaining >= MAX_HOLD else math.floor(max(0.0, remaining))
        return calls.get_task(self.task_id, wait=self._hold or None)

    def pause(self, task: Task, took: float) -> float:
        remaining = self._deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"task {task.task_id} is still {task.status} after {self.timeout} s")
        if self._hold and took >= self._hold / 2:
            return 0.0  # the API held the request as long as asked: ask again at once
        pause, self._pause = self._pause, min(MAX_PAUSE, self._pause * 2)
        return min(pause, remaining)

    def pause_after(self, error: domain.ApiUnavailable) -> float:
        """An API that answered 503 with ``Retry-After`` (it holds as many waits as it
        may, or its database is down for a moment) is asked again after that long, if
        the wait's time allows it; otherwise ``error`` is raised."""
        remaining = self._deadline - time.monotonic()
        if error.retry_after is None or error.retry_after >= remaining:
            raise error
        return error.retry_after


def outcome(task: Task) -> Any:
    """A terminal task's result, or the error that says why there is none."""
    return domain.outcome(task.task_id, task.status, task.result, task.error)
