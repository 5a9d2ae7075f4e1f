"""The maintenance runner with a fake clock and fake services: intervals, failures,
leadership."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import exc

from jobplane.maintenance.runner import Maintenance
from jobplane.maintenance.service import Service


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class FakeElector:
    """Leads while ``leading`` is True; raises ``error`` if one is set."""

    def __init__(self) -> None:
        self.leading = True
        self.error: Exception | None = None
        self.released = False

    def acquire(self) -> bool:
        if self.error is not None:
            raise self.error
        return self.leading

    def release(self) -> None:
        self.released = True


class FakeService(Service):
    """Records when it ran; asks for its next pass ``interval`` s later, or fails."""

    def __init__(self, name: str, interval: float, clock: Clock) -> None:
        self.name = name
        self.interval = interval
        self.clock = clock
        self.ran: list[float] = []
        self.failing: Exception | None = None
        self.outages = 0

    def run_once(self) -> float:
        self.ran.append(self.clock.now)
        if self.failing is not None:
            raise self.failing
        return self.interval

    def note_outage(self) -> None:
        self.outages += 1


def runner(*services: FakeService, clock: Clock, elector: FakeElector | None = None) -> Any:
    return Maintenance(
        elector or FakeElector(),  # type: ignore[arg-type]
        services,
        clock=clock,
        min_retry=1.0,
        max_retry=4.0,
    )


def advance(maintenance: Maintenance, clock: Clock, seconds: float) -> None:
    """Step the runner as ``run()`` would, waiting as long as each step says."""
    until = clock.now + seconds
    while clock.now < until:
        clock.now = min(until, clock.now + max(maintenance.step(), 0.001))


def test_a_new_leader_runs_every_service_at_once_then_each_at_its_own_interval() -> None:
    clock = Clock()
    fast, slow = FakeService("fast", 5.0, clock), FakeService("slow", 30.0, clock)
    maintenance = runner(fast, slow, clock=clock)

    advance(maintenance, clock, 61)

    assert fast.ran == pytest.approx([1000.0 + 5 * i for i in range(13)])
    assert slow.ran == pytest.approx([1000.0, 1030.0, 1060.0])


def test_the_runner_wakes_at_least_every_leader_check_to_verify_its_lock() -> None:
    clock = Clock()
    maintenance = runner(FakeService("hourly", 3600.0, clock), clock=clock)
    assert maintenance.step() == maintenance.leader_check


def test_a_failing_service_is_retried_with_backoff_and_never_stops_the_others() -> None:
    # Given two services, one of which fails from the start
    clock = Clock()
    broken, steady = FakeService("broken", 5.0, clock), FakeService("steady", 5.0, clock)
    broken.failing = RuntimeError("a bug")
    maintenance = runner(broken, steady, clock=clock)

    # When the runner runs for 20 s
    advance(maintenance, clock, 20.5)

    # Then the steady one ran at its interval, and the broken one was retried after
    # pauses that grow (1, 2, 4 s, with up to a quarter of jitter) up to the cap
    assert steady.ran == pytest.approx([1000.0, 1005.0, 1010.0, 1015.0, 1020.0])
    gaps = [later - earlier for earlier, later in zip(broken.ran, broken.ran[1:], strict=False)]
    assert 1.0 <= gaps[0] <= 1.25 and 2.0 <= gaps[1] <= 2.5
    assert all(4.0 <= gap <= 5.0 for gap in gaps[2:])

    # And once it works again, it is back to its own interval
    broken.failing = None
    failed = len(broken.ran)
    advance(maintenance, clock, 16)
    since = broken.ran[failed:]
    gaps = [later - earlier for earlier, later in zip(since, since[1:], strict=False)]
    assert len(gaps) >= 2 and gaps == pytest.approx([5.0] * len(gaps))


def test_a_database_outage_is_told_to_every_service() -> None:
    clock = Clock()
    one, other = FakeService("one", 5.0, clock), FakeService("other", 5.0, clock)
    one.failing = exc.OperationalError("SELECT 1", {}, Exception("connection refused"))
    maintenance = runner(one, other, clock=clock)

    maintenance.step()

    assert (one.outages, other.outages) == (1, 1)


def test_a_standby_runs_nothing_and_a_new_leadership_starts_every_service_afresh() -> None:
    # Given a leader that ran its service once
    clock = Clock()
    elector = FakeElector()
    service = FakeService("every-minute", 60.0, clock)
    maintenance = runner(service, clock=clock, elector=elector)
    maintenance.step()
    assert service.ran == [1000.0]

    # When it loses the lead for a while, it only polls
    elector.leading = False
    clock.now += 10
    assert maintenance.step() == maintenance.standby_poll
    clock.now += 1
    assert service.ran == [1000.0]

    # Then, leading again, it runs the service at once, not at its old due time
    elector.leading = True
    maintenance.step()
    assert service.ran == [1000.0, 1011.0]


def test_an_elector_that_cannot_reach_the_database_is_a_standby_with_an_outage() -> None:
    clock = Clock()
    elector = FakeElector()
    elector.error = exc.OperationalError("SELECT 1", {}, Exception("connection refused"))
    service = FakeService("any", 5.0, clock)
    maintenance = runner(service, clock=clock, elector=elector)

    assert maintenance.step() == maintenance.standby_poll
    assert service.ran == [] and service.outages == 1


@pytest.mark.timeout(10)
def test_run_stops_cleanly_and_gives_the_lock_back() -> None:
    clock = Clock()
    elector = FakeElector()
    maintenance = runner(FakeService("any", 5.0, clock), clock=clock, elector=elector)
    maintenance.stop()
    maintenance.run()
    assert elector.released
