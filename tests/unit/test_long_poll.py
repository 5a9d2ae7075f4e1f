"""``Client.wait``'s plan of requests: long polls within the caller's timeout."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from jobplane.domain import ApiUnavailable
from jobplane.library.long_poll import FIRST_PAUSE, MAX_HOLD, MAX_PAUSE, LongPoll
from jobplane.library.results import Task

NOW = datetime(2026, 1, 1, tzinfo=UTC).isoformat()


def pending_task() -> Task:
    return Task.from_json(
        {
            "taskId": "t1",
            "taskType": "demo.noop",
            "queue": "default",
            "priority": 0,
            "status": "pending",
            "progress": 0,
            "total": 0,
            "percent": 0,
            "attempts": 0,
            "retryCount": 0,
            "createdAt": NOW,
            "params": {},
            "maxRetries": 3,
            "timeoutSeconds": 60,
            "runAfter": NOW,
            "cancelRequested": False,
        }
    )


def test_each_request_holds_whole_seconds_never_past_the_timeout() -> None:
    assert LongPoll("t1", None).next_call().params == {"wait": MAX_HOLD}
    assert LongPoll("t1", 600).next_call().params == {"wait": MAX_HOLD}
    call = LongPoll("t1", 2.7).next_call()
    assert (call.params, call.hold) == ({"wait": 2}, 2)
    assert LongPoll("t1", 0.4).next_call().params is None  # the last second: plain reads


def test_an_api_that_held_the_request_is_asked_again_at_once() -> None:
    poll = LongPoll("t1", None)
    poll.next_call()
    assert poll.pause(pending_task(), took=MAX_HOLD) == 0.0


def test_an_api_that_answers_at_once_is_asked_again_after_growing_pauses() -> None:
    poll = LongPoll("t1", None)
    pauses = []
    for _ in range(8):
        poll.next_call()
        pauses.append(poll.pause(pending_task(), took=0.01))
    assert pauses[0] == FIRST_PAUSE
    assert pauses == sorted(pauses) and pauses[-1] == MAX_PAUSE


def test_the_timeout_raises_once_it_has_passed() -> None:
    poll = LongPoll("t1", 0)
    poll.next_call()
    with pytest.raises(TimeoutError, match="task t1 is still pending after 0 s"):
        poll.pause(pending_task(), took=0.0)


def test_a_503_with_retry_after_is_waited_out_only_while_the_timeout_allows() -> None:
    busy = ApiUnavailable("too many waits", retry_after=5.0)
    assert LongPoll("t1", timeout=30).pause_after(busy) == 5.0
    assert LongPoll("t1", timeout=None).pause_after(busy) == 5.0
    # Not when the wait would end first, nor when the API did not say how long
    for poll, error in (
        (LongPoll("t1", timeout=4), busy),
        (LongPoll("t1", timeout=30), ApiUnavailable("database down")),
    ):
        with pytest.raises(ApiUnavailable) as raised:
            poll.pause_after(error)
        assert raised.value is error
