"""Which second starts of a task the fault suite explains, and which it reports."""

from __future__ import annotations

from bench.faultsuite.starts import Start, restarts

KILLED_GROUP, LIVE_GROUP = 100, 200


def start(attempt: int, at: float, pgid: int = KILLED_GROUP) -> Start:
    return Start(task="t", attempt=attempt, dispatch=attempt, pid=pgid + 1, pgid=pgid, at=at)


def never_on_purpose(_start: Start) -> bool:
    return False


def test_a_restart_after_the_earlier_worker_was_killed_is_explained() -> None:
    found = restarts(
        [start(1, 10.0), start(2, 20.0, LIVE_GROUP)], {KILLED_GROUP: 15.0}, never_on_purpose
    )
    assert [r.why for r in found] == ["its worker was SIGKILLed"]


def test_a_restart_in_a_worker_nobody_killed_is_unexplained() -> None:
    found = restarts([start(1, 10.0, LIVE_GROUP), start(2, 20.0, LIVE_GROUP)], {}, never_on_purpose)
    assert [r.explained for r in found] == [False]


def test_a_kill_after_the_second_start_does_not_explain_it() -> None:
    found = restarts(
        [start(1, 10.0), start(2, 20.0, LIVE_GROUP)], {KILLED_GROUP: 25.0}, never_on_purpose
    )
    assert [r.explained for r in found] == [False]


def test_a_restart_after_an_attempt_that_failed_on_purpose_is_explained() -> None:
    found = restarts(
        [start(1, 10.0, LIVE_GROUP), start(2, 20.0, LIVE_GROUP)], {}, lambda s: s.attempt == 1
    )
    assert [r.why for r in found] == ["the earlier attempt failed on purpose"]


def test_two_starts_of_one_attempt_are_unexplained_even_after_a_kill() -> None:
    found = restarts(
        [start(1, 10.0), start(1, 20.0, LIVE_GROUP)], {KILLED_GROUP: 15.0}, never_on_purpose
    )
    assert [r.explained for r in found] == [False]
