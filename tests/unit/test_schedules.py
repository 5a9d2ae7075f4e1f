"""Fire times: standard cron semantics, per-schedule timezones, the DST rule."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from croniter import croniter
from hypothesis import given, settings
from hypothesis import strategies as st
from periodiq import cron

from jobplane import job
from jobplane.schedules import InvalidSchedule, Schedule


def schedule(expression: str, timezone: str = "UTC", **options: object) -> Schedule:
    return Schedule.from_options(
        "s", {"periodic": cron(expression), "timezone": timezone, **options}
    )


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)  # type: ignore[misc]


@pytest.mark.parametrize(
    ("expression", "after", "expected"),
    [
        ("30 15 * * 1-5", utc(2025, 12, 16, 0, 0), utc(2025, 12, 16, 15, 30)),
        ("30 15 * * 1-5", utc(2025, 12, 19, 15, 30), utc(2025, 12, 22, 15, 30)),  # Fri → Mon
        ("0 9 * * 0", utc(2025, 12, 16), utc(2025, 12, 21, 9, 0)),  # Sunday as 0
        ("0 9 * * 7", utc(2025, 12, 16), utc(2025, 12, 21, 9, 0)),  # Sunday as 7
        ("0 9 * * sun", utc(2025, 12, 16), utc(2025, 12, 21, 9, 0)),
        ("0 0 1 * *", utc(2025, 12, 16), utc(2026, 1, 1)),
        ("0 0 29 2 *", utc(2025, 3, 1), utc(2028, 2, 29)),  # leap day
        ("0 12 13 * 5", utc(2025, 12, 1), utc(2025, 12, 5, 12)),  # day OR weekday
        ("*/20 * * * *", utc(2025, 12, 16, 10, 41), utc(2025, 12, 16, 11, 0)),
        ("@hourly", utc(2025, 12, 16, 10, 0), utc(2025, 12, 16, 11, 0)),
    ],
)
def test_next_fire_time_table(expression: str, after: datetime, expected: datetime) -> None:
    assert schedule(expression).next_fire_time(after) == expected


def test_a_schedule_reads_its_cron_in_its_own_timezone() -> None:
    taipei = schedule("30 15 * * 1-5", "Asia/Taipei")
    # Tuesday 2025-12-16 15:30 in Taipei is 07:30 UTC.
    assert taipei.next_fire_time(utc(2025, 12, 16)) == utc(2025, 12, 16, 7, 30)


def test_daily_0230_in_berlin_fires_once_a_day_across_both_dst_changes() -> None:
    berlin = schedule("30 2 * * *", "Europe/Berlin")
    spring = berlin.fire_times(utc(2026, 3, 27), utc(2026, 4, 1))
    autumn = berlin.fire_times(utc(2026, 10, 23), utc(2026, 10, 28))
    assert spring == [
        utc(2026, 3, 27, 1, 30),  # 02:30 CET
        utc(2026, 3, 28, 1, 30),
        utc(2026, 3, 29, 1, 0),  # 02:30 does not exist: 03:00 CEST, when the clock jumps
        utc(2026, 3, 30, 0, 30),  # 02:30 CEST
        utc(2026, 3, 31, 0, 30),
    ]
    assert autumn == [
        utc(2026, 10, 23, 0, 30),
        utc(2026, 10, 24, 0, 30),
        utc(2026, 10, 25, 0, 30),  # 02:30 happens twice: the first (CEST) only
        utc(2026, 10, 26, 1, 30),  # 02:30 CET
        utc(2026, 10, 27, 1, 30),
    ]


def test_a_schedule_that_can_never_fire_has_no_next_time() -> None:
    assert schedule("0 0 31 2 *").next_fire_time(utc(2025, 1, 1)) is None


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"timezone": "Mars/Olympus"}, "unknown timezone"),
        ({"misfire": "sometimes"}, "misfire must be one of"),
    ],
)
def test_a_bad_declaration_fails_at_import_with_the_reason(
    options: dict[str, str], message: str
) -> None:
    with pytest.raises(InvalidSchedule, match=message):
        job("bad.schedule", periodic=cron("0 * * * *"), **options)  # type: ignore[arg-type]


def test_an_out_of_range_cron_field_is_refused() -> None:
    with pytest.raises(InvalidSchedule, match="minute"):
        schedule("61 * * * *")


def _field(low: int, high: int) -> st.SearchStrategy[str]:
    values = st.lists(st.integers(low, high), min_size=1, max_size=4, unique=True)
    return values.map(lambda v: ",".join(map(str, sorted(v))))


cron_expressions = st.tuples(
    _field(0, 59),
    _field(0, 23),
    st.one_of(st.just("*"), _field(1, 28)),
    st.one_of(st.just("*"), _field(1, 12)),
    st.one_of(st.just("*"), _field(0, 6)),
).map(" ".join)


@settings(max_examples=300, deadline=None)
@given(
    expression=cron_expressions,
    start=st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2030, 1, 1)),
    zone=st.sampled_from(["UTC", "Asia/Taipei"]),
)
def test_fire_times_agree_with_croniter(expression: str, start: datetime, zone: str) -> None:
    tz = ZoneInfo(zone)
    after = start.replace(second=0, microsecond=0, tzinfo=tz)
    expected = croniter(expression, after).get_next(datetime)
    ours = schedule(expression, zone).next_fire_time(after.astimezone(UTC))
    assert ours is not None
    assert ours == expected.astimezone(UTC), expression
    assert ours - after < timedelta(days=5 * 366)
