"""Daylight saving: jobplane's fire times against cronsim, which follows Debian cron.

The three rules: an expression whose minute or hour field starts with ``*`` fires at
every instant whose wall-clock reading matches (both passes of a repeated hour); any
other fires once at a time the clock repeats (the first pass), and when the clock jumps
at a time it skips.
"""

from __future__ import annotations

import functools
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from cronsim import CronSim
from hypothesis import event, given, settings
from hypothesis import strategies as st

from jobplane.maintenance.catchup import ENQUEUE, plan
from tests.unit.test_schedules import schedule, utc

ZONES = [
    "Europe/Berlin",
    "America/New_York",
    "Australia/Lord_Howe",  # a 30-minute shift
    "America/Santiago",  # the clock changes at midnight
    "America/Havana",  # the clock changes at midnight
    "Asia/Kolkata",  # no daylight saving
    "UTC",
    "Pacific/Chatham",  # +12:45 / +13:45, the change at 02:45 / 03:45
]
#: Zones whose changes cronsim steps over wrongly for real-time expressions: it misses
#: readings there, and for some (Chatham, "* */3 5,10 * *" across April's change) never
#: returns from its search. There the rule's own definition is the only reference.
CRONSIM_UNRELIABLE = {"Australia/Lord_Howe", "Pacific/Chatham"}
MINUTE = timedelta(minutes=1)


@functools.cache
def changes_of_2026(zone: str) -> list[datetime]:
    """The instants (UTC) at which the zone's clock changes in 2026; a quarter-hour grid."""
    tz, step = ZoneInfo(zone), timedelta(minutes=15)
    instant, found = datetime(2026, 1, 1, tzinfo=UTC), []
    while instant.year == 2026:
        if (instant + step).astimezone(tz).utcoffset() != instant.astimezone(tz).utcoffset():
            found.append(instant + step)
        instant += step
    return found


def cronsim_fire_times(
    expression: str, zone: str, start: datetime, end: datetime
) -> list[datetime]:
    """cronsim's fire times in (start, end], as UTC instants.

    cronsim is started three hours early: started inside a repeated hour, it can return
    a time of the first pass, which is before the start.
    """
    found = set()
    for fire in CronSim(expression, (start - timedelta(hours=3)).astimezone(ZoneInfo(zone))):
        instant = fire.astimezone(UTC)
        if instant > end:
            break
        if instant > start:
            found.add(instant)
    return sorted(found)


def readings_fire_times(
    expression: str, zone: str, start: datetime, end: datetime
) -> list[datetime]:
    """The real-time rule by its definition: every minute of (start, end] whose reading matches."""
    fields, tz = CronSim(expression, start), ZoneInfo(zone)
    instant = start.replace(second=0, microsecond=0) + MINUTE
    found = []
    while instant <= end:
        local = instant.astimezone(tz)
        if (
            local.minute in fields.minutes
            and local.hour in fields.hours
            and local.month in fields.months
            and fields.match_day(local.date())
        ):
            found.append(instant)
        instant += MINUTE
    return found


def _values(low: int, high: int) -> st.SearchStrategy[str]:
    numbers = st.lists(st.integers(low, high), min_size=1, max_size=3, unique=True)
    listed = numbers.map(lambda v: ",".join(map(str, sorted(v))))
    ranged = st.tuples(st.integers(low, high), st.integers(low, high)).map(
        lambda ab: f"{min(ab)}-{max(ab)}"
    )
    return st.one_of(listed, ranged)


def _field(low: int, high: int, step_max: int) -> st.SearchStrategy[str]:
    steps = st.integers(1, step_max).map(lambda n: f"*/{n}")
    return st.one_of(st.just("*"), steps, _values(low, high))


# Hours near the night's changes are the interesting ones, so they come up more often.
_hours = st.one_of(
    _field(0, 23, 6), st.integers(0, 4).map(str), st.sampled_from(["1-3", "0,2", "2,3"])
)
expressions = st.tuples(
    _field(0, 59, 30),
    _hours,
    st.one_of(st.just("*"), st.just("*"), _field(1, 28, 3)),
    st.just("*"),
    st.one_of(st.just("*"), st.just("*"), _values(0, 6)),
).map(" ".join)


@st.composite
def windows(draw: st.DrawFn, zone: str) -> tuple[datetime, datetime]:
    """A stretch of up to 26 hours, around one of the zone's 2026 changes or anywhere in 2026."""
    changes = changes_of_2026(zone)
    around = draw(st.sampled_from(changes)) if changes and draw(st.booleans()) else None
    if around is None:
        around = utc(2026, 1, 1) + timedelta(minutes=draw(st.integers(0, 364 * 24 * 60)))
    start = around - timedelta(minutes=draw(st.integers(0, 24 * 60)))
    start += timedelta(seconds=draw(st.sampled_from([0, 0, 30])))
    return start, start + timedelta(minutes=draw(st.integers(60, 26 * 60)))


@settings(max_examples=150, deadline=None)
@given(data=st.data(), expression=expressions, zone=st.sampled_from(ZONES))
def test_fire_times_agree_with_cronsim_across_the_changes_of_2026(
    data: st.DataObject, expression: str, zone: str
) -> None:
    start, end = data.draw(windows(zone))
    ours = schedule(expression, zone).fire_times(start, end)
    real_time = schedule(expression, zone).in_real_time
    if real_time and zone in CRONSIM_UNRELIABLE:
        expected = readings_fire_times(expression, zone, start, end)
    else:
        expected = cronsim_fire_times(expression, zone, start, end)
    if ours != expected and real_time:
        # cronsim steps a real-time expression forward by whole hours and minute gaps, and
        # so misses some readings where the clock changes by or at half an hour (Lord
        # Howe, Chatham), and fires at the jump over a skipped midnight (Santiago). There,
        # the rule itself, every minute of real time read on the clock, is the reference.
        event(f"cronsim misses or adds a reading: {zone}")
        expected = readings_fire_times(expression, zone, start, end)
    assert ours == expected, [fire.astimezone(ZoneInfo(zone)).isoformat() for fire in ours]
    if ours:
        assert schedule(expression, zone).next_fire_time(start) == ours[0]


def local_readings(fires: list[datetime], zone: str) -> list[str]:
    return [fire.astimezone(ZoneInfo(zone)).strftime("%H:%M%z") for fire in fires]


def gaps(fires: list[datetime]) -> set[timedelta]:
    return {later - earlier for earlier, later in zip(fires, fires[1:], strict=False)}


@pytest.mark.parametrize(
    ("zone", "start", "readings"),
    [
        # 2026-10-25: at 03:00 CEST the clock goes back to 02:00 CET.
        pytest.param(
            "Europe/Berlin", utc(2026, 10, 24, 23, 0),
            ["02:00+0200", "02:15+0200", "02:30+0200", "02:45+0200",
             "02:00+0100", "02:15+0100", "02:30+0100", "02:45+0100"],
            id="berlin-autumn-both-passes-of-0200-0300",
        ),
        # 2026-04-05: at 02:00 +11:00 the clock goes back to 01:30 +10:30.
        pytest.param(
            "Australia/Lord_Howe", utc(2026, 4, 4, 13, 0),
            ["01:30+1100", "01:45+1100", "01:30+1030", "01:45+1030", "02:00+1030"],
            id="lord-howe-autumn-both-passes-of-0130-0200",
        ),
        # 2026-10-04: at 02:00 +10:30 the clock jumps to 02:30 +11:00.
        pytest.param(
            "Australia/Lord_Howe", utc(2026, 10, 3, 14, 0), ["01:45+1030", "02:30+1100"],
            id="lord-howe-spring-over-the-skipped-half-hour",
        ),
    ],
)  # fmt: skip
def test_every_15_minutes_keeps_its_rhythm_through_a_change_of_the_clock(
    zone: str, start: datetime, readings: list[str]
) -> None:
    fires = schedule("*/15 * * * *", zone).fire_times(start, start + timedelta(hours=4))
    assert gaps(fires) == {timedelta(minutes=15)}
    seen = local_readings(fires, zone)
    first = seen.index(readings[0])
    assert seen[first : first + len(readings)] == readings


def test_both_passes_of_berlins_repeated_hour_are_planned_as_separate_runs() -> None:
    every_15 = schedule("*/15 * * * *", "Europe/Berlin")
    now, first_seen = utc(2026, 10, 25, 2, 0, 30), utc(2026, 10, 24, 23, 50)
    decisions = [d for d in plan(every_15, now, first_seen, {}) if d.outcome == ENQUEUE]
    fire_times = [d.fire_time for d in decisions]
    assert len(fire_times) == len(set(fire_times)) == 9  # 02:00 to 02:45 twice, then 03:00


@pytest.mark.parametrize(
    ("expression", "zone", "night", "readings"),
    [
        # 2026-10-25: at 03:00 CEST the clock goes back to 02:00 CET.
        pytest.param(
            "30 2 * * *", "Europe/Berlin", utc(2026, 10, 24, 12), ["02:30+0200"],
            id="berlin-autumn-0230-fires-once-at-the-first-pass",
        ),
        # 2026-03-29: at 02:00 CET the clock jumps to 03:00 CEST; 02:30 does not exist.
        pytest.param(
            "30 2 * * *", "Europe/Berlin", utc(2026, 3, 28, 12), ["03:00+0200"],
            id="berlin-spring-0230-fires-at-0300-when-the-clock-jumps",
        ),
        pytest.param(
            "0,30 2,3 * * *", "Europe/Berlin", utc(2026, 3, 28, 12), ["03:00+0200", "03:30+0200"],
            id="berlin-spring-times-in-the-skipped-hour-fire-as-one-run-at-0300",
        ),
        # 2026-10-04: at 02:00 +10:30 the clock jumps to 02:30 +11:00.
        pytest.param(
            "15 2 * * *", "Australia/Lord_Howe", utc(2026, 10, 3, 0), ["02:30+1100"],
            id="lord-howe-spring-0215-fires-at-0230-when-the-clock-jumps",
        ),
        # 2026-04-05: at 02:00 +11:00 the clock goes back to 01:30 +10:30.
        pytest.param(
            "45 1 * * *", "Australia/Lord_Howe", utc(2026, 4, 4, 0), ["01:45+1100"],
            id="lord-howe-autumn-0145-fires-once-at-the-first-pass",
        ),
    ],
)  # fmt: skip
def test_a_fixed_time_fires_once_at_its_first_pass_or_when_the_clock_jumps_over_it(
    expression: str, zone: str, night: datetime, readings: list[str]
) -> None:
    fires = schedule(expression, zone).fire_times(night, night + timedelta(days=1))
    assert local_readings(fires, zone) == readings


def test_a_half_hourly_reading_on_lord_howe_fires_in_both_passes_where_cronsim_skips_one() -> None:
    # cronsim jumps from 01:31 +11:00 by 59 minutes and so steps over 01:30 +10:30.
    expression, zone = "30 * * * *", "Australia/Lord_Howe"
    start, end = utc(2026, 4, 4, 13, 0), utc(2026, 4, 4, 17, 0)
    fires = schedule(expression, zone).fire_times(start, end)
    assert "01:30+1030" in local_readings(fires, zone)
    assert fires == readings_fire_times(expression, zone, start, end)
    assert len(cronsim_fire_times(expression, zone, start, end)) == len(fires) - 1
