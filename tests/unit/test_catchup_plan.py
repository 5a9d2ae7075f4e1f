"""Catch-up decisions, as a pure function of the clock (a market-data team's schedules)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from periodiq import cron

from jobplane.maintenance.catchup import Decision, plan
from jobplane.schedules import Schedule

TAIPEI = "Asia/Taipei"


def schedule(name: str, expression: str, **options: object) -> Schedule:
    options.setdefault("timezone", TAIPEI)
    return Schedule.from_options(name, {"periodic": cron(expression), **options})


def taipei(day: int, hour: int, minute: int = 0) -> datetime:
    """A December 2025 time in Taipei (UTC+8), as UTC."""
    return datetime(2025, 12, day, hour, minute, tzinfo=UTC) - timedelta(hours=8)


def outcomes(decisions: list[Decision]) -> list[tuple[str, str]]:
    return [
        (d.fire_time.astimezone(UTC).isoformat() if d.fire_time else "-", d.outcome)
        for d in decisions
    ]


# Tuesday 2025-12-16 19:41 Taipei; the schedules have been known since the 10th.
NOW = taipei(16, 19, 41)
FIRST_SEEN = taipei(10, 0)


def test_the_seeds_example_at_tuesday_1941_taipei() -> None:
    futures = plan(schedule("futures", "30 15 * * 1-5"), NOW, FIRST_SEEN, {})
    prices = plan(schedule("prices", "0 21 * * 1-5"), NOW, FIRST_SEEN, {})
    sunday = plan(schedule("sunday", "0 9 * * 0"), NOW, FIRST_SEEN, {})

    # Today's 15:30 run did not run: enqueued (Monday's is outside the 24 h window)
    assert [d.outcome for d in futures] == ["enqueued"]
    assert futures[0].fire_time == taipei(16, 15, 30)
    # 21:00 today is still to come; Monday's 21:00 (inside the window) was missed
    assert [d.outcome for d in prices] == ["enqueued", "not_due"]
    assert prices[-1].reason == "next run at 21:00 Asia/Taipei"
    assert [d.outcome for d in sunday] == ["not_scheduled_today"]
    assert sunday[0].reason == "no run on Tuesday (Asia/Taipei)"


THREE_MISSED = taipei(16, 15, 32)  # the 15:30 runs of the 12th (Fri), 15th (Mon) and 16th


@pytest.mark.parametrize(
    ("misfire", "expected"),
    [
        ("all", ["enqueued", "enqueued", "enqueued"]),
        ("latest", ["skipped_late", "skipped_late", "enqueued"]),
        ("skip", ["skipped_late", "skipped_late", "skipped_late"]),
    ],
)
def test_the_misfire_policy_decides_what_happens_to_missed_runs(
    misfire: str, expected: list[str]
) -> None:
    window = 5 * 86400
    decisions = plan(
        schedule("s", "30 15 * * 1-5", misfire=misfire, catch_up_window=window),
        THREE_MISSED,
        FIRST_SEEN,
        {},
    )
    assert [d.outcome for d in decisions] == expected
    assert [d.fire_time for d in decisions] == [
        taipei(12, 15, 30),
        taipei(15, 15, 30),
        taipei(16, 15, 30),
    ]


def test_recorded_runs_are_left_alone() -> None:
    recorded = {taipei(15, 15, 30): ("t-1", "completed")}
    two_days = schedule("s", "30 15 * * 1-5", catch_up_window=2 * 86400)
    decisions = plan(two_days, taipei(16, 15, 30), FIRST_SEEN, recorded)
    assert [(d.outcome, d.task_id) for d in decisions] == [
        ("already_recorded", "t-1"),
        ("enqueued", None),
    ]


def test_a_run_later_than_max_lateness_is_recorded_skipped_with_the_reason() -> None:
    decisions = plan(schedule("s", "30 15 * * 1-5", max_lateness=3600), NOW, FIRST_SEEN, {})
    assert [d.outcome for d in decisions] == ["skipped_late"]
    assert decisions[-1].reason == "4h 11m late, over max_lateness of 1h"


def test_catch_up_never_reaches_before_the_schedule_was_first_seen() -> None:
    decisions = plan(schedule("s", "30 15 * * 1-5"), NOW, taipei(16, 12, 0), {})
    assert [d.fire_time for d in decisions] == [taipei(16, 15, 30)]


def test_an_on_time_tick_is_enqueued_whatever_the_policy() -> None:
    decisions = plan(
        schedule("s", "30 15 * * 1-5", misfire="skip"), taipei(16, 15, 30), FIRST_SEEN, {}
    )
    assert decisions[-1].outcome == "enqueued" and decisions[-1].reason == "on time"
