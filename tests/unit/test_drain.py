"""The drain: one thread handing batches of queued items to a handler."""

from __future__ import annotations

import threading

import pytest

from jobplane.drain import Drain, DrainStopped


class Gate:
    """A handler that records its batches; the first one waits until ``open()``."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.started = threading.Event()
        self._open = threading.Event()

    def __call__(self, batch: list[int]) -> None:
        self.started.set()
        self._open.wait(10)
        self.batches.append(batch)

    def open(self) -> None:
        self._open.set()


def test_items_queued_while_a_batch_is_handled_make_up_the_next_batch() -> None:
    # Given a drain whose handler is busy with a first item
    gate = Gate()
    drain: Drain[int] = Drain(handle=gate, name="test-drain")
    drain.put(0)
    assert gate.started.wait(10)

    # When more items are queued meanwhile, and the handler is let go
    for item in range(1, 6):
        drain.put(item)
    gate.open()

    # Then they come as one batch, in order
    assert drain.flush(10)
    assert gate.batches == [[0], [1, 2, 3, 4, 5]]
    assert drain.stop(10)


def test_a_batch_holds_at_most_max_batch_items() -> None:
    gate = Gate()
    drain: Drain[int] = Drain(handle=gate, name="test-drain", max_batch=2)
    drain.put(0)
    assert gate.started.wait(10)
    for item in range(1, 6):
        drain.put(item)
    gate.open()
    assert drain.flush(10)
    assert gate.batches == [[0], [1, 2], [3, 4], [5]]
    assert drain.stop(10)


def test_flush_waits_for_what_was_queued_before_it() -> None:
    # Given a handler held on its first batch
    gate = Gate()
    drain: Drain[int] = Drain(handle=gate, name="test-drain")
    drain.put(1)
    assert gate.started.wait(10)

    # Then a flush times out while it is held, and succeeds once it is let go
    assert drain.flush(0.05) is False
    gate.open()
    assert drain.flush(10)
    assert gate.batches == [[1]]
    assert drain.stop(10)


def test_a_flush_before_anything_was_queued_returns_at_once() -> None:
    drain: Drain[int] = Drain(handle=Gate(), name="test-drain")
    assert drain.flush(0)
    assert drain.stop(0)


def test_stop_handles_what_is_queued_ends_the_thread_and_refuses_more() -> None:
    gate = Gate()
    drain: Drain[int] = Drain(handle=gate, name="test-drain")
    drain.put(1)
    assert gate.started.wait(10)
    drain.put(2)
    gate.open()

    assert drain.stop(10)

    assert gate.batches == [[1], [2]]
    assert drain.stopped
    assert not any(t.name == "test-drain" for t in threading.enumerate())
    with pytest.raises(DrainStopped, match="closed"):
        drain.put(3)


def test_the_thread_outlives_a_handler_that_raises(caplog: pytest.LogCaptureFixture) -> None:
    handled: list[list[int]] = []

    def handle(batch: list[int]) -> None:
        if batch == [1]:
            raise ValueError("bad batch")
        handled.append(batch)

    drain: Drain[int] = Drain(handle=handle, name="test-drain")
    drain.put(1)
    assert drain.flush(10)
    drain.put(2)
    assert drain.flush(10)

    assert handled == [[2]]
    assert "test-drain: a batch of 1 item(s) failed" in caplog.text
    assert drain.stop(10)
