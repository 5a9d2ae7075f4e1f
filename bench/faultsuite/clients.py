"""Client threads that submit a plan's jobs over HTTP, as a careful client would.

Each job is one ``POST /api/tasks`` with an Idempotency-Key of its own, sent at its
time in the submission window. A 5xx answer or a connection error is counted (by
status, or by kind of error) and the same request is sent again, to the other API
when there are two, until it is accepted or ``give_up_after`` s have passed. The key
makes a retry of a request whose answer was lost return the task it created.
"""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

#: Seconds a client waits before sending a failed request again: doubling, capped.
FIRST_BACKOFF, MAX_BACKOFF = 0.1, 1.0
REQUEST_TIMEOUT = 10.0
#: Counted besides "503" when a 503 answer does not say when to try again.
NO_RETRY_AFTER = "503 without Retry-After"


class Submitters:
    """``clients`` threads submitting ``jobs`` bodies evenly over ``duration`` s."""

    def __init__(
        self,
        ports: list[int],
        body: Callable[[int], dict[str, Any]],
        *,
        jobs: int,
        duration: float,
        clients: int,
        give_up_after: float,
        key_prefix: str,
    ) -> None:
        self.ports = ports
        self.body = body
        self.jobs, self.duration = jobs, duration
        self.give_up_after = give_up_after
        self.key_prefix = key_prefix
        #: submission index -> the task id the API answered with
        self.accepted: dict[int, str] = {}
        #: submissions a client gave up on, index -> the last error
        self.given_up: dict[int, str] = {}
        #: every failed request, by HTTP status or kind of connection error
        self.errors: Counter[str] = Counter()
        self.started = 0.0
        self.last_accepted = 0.0  #: Unix time of the last acceptance
        self._next = 0
        self._lock = threading.Lock()
        self._threads = [
            threading.Thread(target=self._serve, args=(n,), name=f"client-{n}", daemon=True)
            for n in range(clients)
        ]

    def start(self) -> float:
        """Start the clients; returns the Unix time of the first submission."""
        self.started = time.time()
        for thread in self._threads:
            thread.start()
        return self.started

    def join(self, timeout: float) -> bool:
        """Wait for every submission to be accepted or given up; False on timeout."""
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        return not any(thread.is_alive() for thread in self._threads)

    @property
    def done(self) -> bool:
        return not any(thread.is_alive() for thread in self._threads)

    def _take(self) -> int | None:
        with self._lock:
            if self._next >= self.jobs:
                return None
            self._next += 1
            return self._next - 1

    def _serve(self, number: int) -> None:
        connections = _Connections(self.ports, first=number)
        while (index := self._take()) is not None:
            due = self.started + index * self.duration / self.jobs
            time.sleep(max(0.0, due - time.time()))
            self._submit(connections, index)
        connections.close()

    def _submit(self, connections: _Connections, index: int) -> None:
        payload = json.dumps(self.body(index)).encode()
        headers = {
            "Content-Type": "application/json",
            "Idempotency-Key": f"{self.key_prefix}-{index}",
        }
        give_up = time.monotonic() + self.give_up_after
        backoff = FIRST_BACKOFF
        while True:
            status, answer, retry_after = connections.post("/api/tasks", payload, headers)
            if status in (200, 201):
                with self._lock:
                    self.accepted[index] = answer["taskId"]
                    self.last_accepted = max(self.last_accepted, time.time())
                return
            with self._lock:
                self.errors[str(status)] += 1
                if status == 503 and not retry_after:
                    self.errors[NO_RETRY_AFTER] += 1
            if (isinstance(status, int) and 400 <= status < 500) or time.monotonic() > give_up:
                with self._lock:
                    self.given_up[index] = f"{status}: {str(answer)[:200]}"
                return
            connections.rotate()
            time.sleep(min(retry_after or backoff, MAX_BACKOFF))
            backoff = min(2 * backoff, MAX_BACKOFF)


class _Connections:
    """One keep-alive connection at a time, to one of the APIs; ``rotate`` moves on."""

    def __init__(self, ports: list[int], first: int) -> None:
        self.ports = ports
        self.current = first % len(ports)
        self.conn: http.client.HTTPConnection | None = None

    def post(self, path: str, payload: bytes, headers: dict[str, str]) -> tuple[Any, Any, float]:
        """(status or kind of error, decoded answer, Retry-After seconds or 0)."""
        try:
            if self.conn is None:
                port = self.ports[self.current]
                self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=REQUEST_TIMEOUT)
            self.conn.request("POST", path, payload, headers)
            response = self.conn.getresponse()
            data = response.read()
        except (OSError, http.client.HTTPException) as error:
            self.close()
            return _kind(error), None, 0.0
        try:
            answer = json.loads(data) if data else None
        except ValueError:
            answer = data[:200]
        return response.status, answer, _seconds(response.getheader("Retry-After"))

    def rotate(self) -> None:
        self.close()
        self.current = (self.current + 1) % len(self.ports)

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def _kind(error: BaseException) -> str:
    if isinstance(error, ConnectionRefusedError):
        return "connection refused"
    if isinstance(error, socket.timeout | TimeoutError):
        return "timeout"
    if isinstance(error, http.client.RemoteDisconnected | ConnectionResetError | BrokenPipeError):
        return "connection closed"
    return type(error).__name__


def _seconds(value: str | None) -> float:
    try:
        return float(value) if value else 0.0
    except ValueError:
        return 0.0
