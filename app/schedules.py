"""Schedules: when a cron schedule fires, and what catch-up does about missed runs.

A schedule is declared on a job with periodiq's ``cron()`` plus jobplane's options
(``timezone``, ``misfire``, ``max_lateness``, ``catch_up_window``). Periodiq parses the
cron expression; everything after that is ours: fire times are computed here in the
schedule's own timezone, every run is a task row identified by (schedule, fire time),
and catch-up decides, per missed fire time, whether to enqueue it or record it skipped.

Daylight saving follows Debian cron (as cronsim implements it). An expression whose
minute or hour field starts with ``*`` (``*/15 * * * *``, ``0 * * * *``) runs in real
time: it fires at every instant whose wall-clock reading matches, so both passes of a
repeated hour fire and a skipped hour does not. Any other expression names wall-clock
times: one that happens twice fires once, at its first occurrence, and one that does not
exist fires when the clock jumps over it (``30 2 * * *`` in Berlin, spring: 03:00 CEST).
Fire times are UTC instants, so the two passes of a repeated hour are two runs.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import cached_property
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from periodiq import CronSpec

from jobplane.domain import JobplaneError
from jobplane.registry import JobSpec, all_jobs

MISFIRE_POLICIES = ("all", "latest", "skip")  #: what catch-up does with missed runs
DEFAULT_CATCH_UP_WINDOW = timedelta(hours=24)
#: A run this late or less is on time (a tick), not missed: the policy does not apply.
ON_TIME = timedelta(seconds=60)
_ZERO = timedelta(0)
#: How far ahead ``next_fire_time`` looks before deciding a schedule never fires.
HORIZON_DAYS = 5 * 366

_FIELDS = (("minute", 0, 59), ("hour", 0, 23), ("dom", 1, 31), ("month", 1, 12), ("dow", 0, 7))


class InvalidSchedule(JobplaneError):
    """A schedule's declaration is not valid."""


class ScheduleNotFound(JobplaneError):
    """No schedule has that name."""


@dataclass(frozen=True)
class Schedule:
    """A job's cron schedule, in its own timezone."""

    name: str
    job: str
    cron: Any  #: periodiq's CronSpec: minute, hour, dom, month, dow value lists
    timezone: ZoneInfo
    misfire: str = "all"
    max_lateness: timedelta | None = None
    catch_up_window: timedelta = DEFAULT_CATCH_UP_WINDOW

    @property
    def cron_text(self) -> str:
        return str(self.cron)

    @cached_property
    def in_real_time(self) -> bool:
        """Debian cron's "wildcard" job: the minute or the hour field starts with ``*``."""
        minute, hour, *_ = _written_fields(self.cron)
        return minute.startswith("*") or hour.startswith("*")

    @cached_property
    def days_and(self) -> bool:
        """Debian cron: a day field that starts with ``*`` makes both day fields required."""
        *_, dom, _month, dow = _written_fields(self.cron)
        return dom.startswith("*") or dow.startswith("*")

    @cached_property
    def _times_of_day(self) -> list[tuple[time, time]]:
        """Every time of day the schedule names, each as a pair of passes."""
        return [
            _passes(time(hour, minute)) for hour in self.cron.hour for minute in self.cron.minute
        ]

    @classmethod
    def from_options(cls, job: str, options: dict[str, Any]) -> Schedule:
        """The schedule of job ``job`` from its decorator options; explains any mistake."""
        spec = options["periodic"]
        _check_cron(job, spec)
        zone = options.get("timezone") or "UTC"
        try:
            tz = ZoneInfo(zone)
        except (ZoneInfoNotFoundError, ValueError):
            raise InvalidSchedule(
                f"job {job!r}: unknown timezone {zone!r} (use an IANA name)"
            ) from None
        misfire = options.get("misfire", "all")
        if misfire not in MISFIRE_POLICIES:
            raise InvalidSchedule(
                f"job {job!r}: misfire must be one of {', '.join(MISFIRE_POLICIES)}"
            )
        return cls(
            name=job,
            job=job,
            cron=spec,
            timezone=tz,
            misfire=misfire,
            max_lateness=_seconds(options.get("max_lateness")),
            catch_up_window=_seconds(options.get("catch_up_window")) or DEFAULT_CATCH_UP_WINDOW,
        )

    def fire_times(self, start: datetime, end: datetime) -> list[datetime]:
        """Every fire time in (start, end], in UTC, oldest first."""
        found: set[datetime] = set()
        # The day before too: a time skipped by the clock can fire on the next day.
        day = start.astimezone(self.timezone).date() - timedelta(days=1)
        while day <= end.astimezone(self.timezone).date():
            for instant in self._fires_on(day):
                if start < instant <= end:
                    found.add(instant)
            day += timedelta(days=1)
        return sorted(found)

    def fires_on(self, day: date) -> list[datetime]:
        """The fire times of one local calendar day, in UTC."""
        return sorted(set(self._fires_on(day)))

    def next_fire_time(self, after: datetime) -> datetime | None:
        """The first fire time after ``after`` (None if it never fires again)."""
        day = after.astimezone(self.timezone).date() - timedelta(days=1)
        for _ in range(HORIZON_DAYS + 1):
            later = [instant for instant in self._fires_on(day) if instant > after]
            if later:
                return min(later)
            day += timedelta(days=1)
        return None

    def _fires_on(self, day: date) -> Iterable[datetime]:
        if not self._runs_on(day):
            return
        for at in self._times_of_day:
            if self.in_real_time:
                yield from _instants_reading(day, at, self.timezone)
            else:
                yield _first_instant_from(day, at, self.timezone)

    def _runs_on(self, day: date) -> bool:
        """Standard cron: unless a day field starts with ``*``, either day field may match."""
        if day.month not in self.cron.month:
            return False
        dom_ok = day.day in self.cron.dom
        # cron: 0 and 7 are Sunday; Python: Monday is 0.
        dow_ok = (day.weekday() + 1) % 7 in {value % 7 for value in self.cron.dow}
        if self.days_and:
            return dom_ok and dow_ok
        return dom_ok or dow_ok


def _written_fields(spec: Any) -> list[str]:
    """The five cron fields as declared, periodiq's ``@hourly`` and the like expanded."""
    text = str(spec).strip()
    return str(CronSpec._named_spec.get(text, text)).split()


def _instants_reading(day: date, at: tuple[time, time], tz: ZoneInfo) -> list[datetime]:
    """Every instant, in UTC and in order, at which a clock in ``tz`` reads ``at`` on ``day``.

    One for an ordinary time, two for a time the clock repeats, none for one it skips.
    ``at`` is the time of day with fold 0 and with fold 1 (the first and the second pass).
    """
    # zoneinfo finds the offset from a datetime's fields and fold alone, so the wall time,
    # labelled UTC, turns into the instant by subtracting it. On this path, run for every
    # minute a schedule names, it is several times faster than datetime.replace().
    first, second = (datetime.combine(day, time_of_day, UTC) for time_of_day in at)
    earlier, later = tz.utcoffset(first) or _ZERO, tz.utcoffset(second) or _ZERO
    if earlier == later:
        return [first - earlier]
    # Two offsets: a repeated time (both instants read ``at``) or a skipped one (neither).
    return [
        instant
        for instant in (first - earlier, second - later)
        if _reading(instant, tz) == (day, at[0])
    ]


def _reading(instant: datetime, tz: ZoneInfo) -> tuple[date, time]:
    local = instant.astimezone(tz)
    return local.date(), local.time()


def _first_instant_from(day: date, at: tuple[time, time], tz: ZoneInfo) -> datetime:
    """The first instant, in UTC, at which a clock in ``tz`` reads ``at`` on ``day`` or, if
    the clock skips that time, the instant it jumps over it (the first minute after)."""
    moment = datetime.combine(day, at[0])
    while not (instants := _instants_reading(moment.date(), _passes(moment.time()), tz)):
        moment += timedelta(minutes=1)
    return instants[0]


def _passes(time_of_day: time) -> tuple[time, time]:
    """A time of day as read on the first and on the second pass of a repeated hour."""
    return time_of_day.replace(fold=0), time_of_day.replace(fold=1)


def _check_cron(job: str, spec: Any) -> None:
    for field, low, high in _FIELDS:
        values = getattr(spec, field, None)
        if not values or any(not low <= value <= high for value in values):
            raise InvalidSchedule(
                f"job {job!r}: cron field {field} of {str(spec)!r} must be within {low}-{high}"
            )


def _seconds(value: float | timedelta | None) -> timedelta | None:
    if value is None or isinstance(value, timedelta):
        return value
    return timedelta(seconds=value)


def is_scheduled(spec: JobSpec) -> bool:
    return spec.options.get("periodic") is not None


def all_schedules() -> list[Schedule]:
    """The schedules of every registered job, by name."""
    return [
        Schedule.from_options(spec.name, spec.options) for spec in all_jobs() if is_scheduled(spec)
    ]


def get_schedule(name: str) -> Schedule:
    for schedule in all_schedules():
        if schedule.name == name:
            return schedule
    known = ", ".join(s.name for s in all_schedules()) or "(none)"
    raise ScheduleNotFound(f"no schedule named {name!r}; known schedules: {known}")
