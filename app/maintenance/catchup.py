"""Catch-up: for each schedule, every fire time in its window without a run, then the policy.

``plan`` decides (pure, testable with any clock); ``catch_up`` reads what is recorded,
plans, and writes the decisions in the caller's transaction: enqueued runs as pending
tasks with their outbox rows, skipped runs as ``skipped`` tasks carrying the reason.
Every run is also recorded in the runs ledger, unique on (schedule, fire time), so
catching up twice, or two schedulers at once, never enqueues a run twice; and since
retention trims the ledger only outside every catch-up window (``ledger_cutoff``), not
after retention has deleted a run's task either.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from sqlalchemy import Connection

from jobplane import service, store
from jobplane.domain import JobplaneError, TaskStatus
from jobplane.schedules import DEFAULT_CATCH_UP_WINDOW, ON_TIME, Schedule
from jobplane.service import Submission
from jobplane.settings import Settings

ENQUEUE, WOULD_ENQUEUE = "enqueued", "would_enqueue"
RECORDED, SKIPPED = "already_recorded", "skipped_late"
NOT_DUE, NOT_TODAY = "not_due", "not_scheduled_today"
#: How much longer than the longest catch-up window the runs ledger remembers a run:
#: room for clock skew between the clean-up's host and the scheduler's.
LEDGER_MARGIN = timedelta(days=1)
#: How far past the server's clock a dry run may be evaluated: room for the clock of the
#: client that asks "what would catch-up do now?" to run a little ahead.
PREVIEW_SKEW = timedelta(minutes=5)

Recorded = dict[datetime, tuple[str | None, str | None]]


@dataclass(frozen=True)
class Decision:
    """What catch-up did (or would do) about one fire time of one schedule."""

    schedule: str
    fire_time: datetime | None
    outcome: str
    reason: str
    timezone: str
    task_id: str | None = None


def plan(
    schedule: Schedule,
    now: datetime,
    first_seen: datetime,
    recorded: Recorded,
) -> list[Decision]:
    """Decide every fire time in the schedule's window, plus today's outlook.

    The window never reaches before ``first_seen``. ``recorded`` maps fire times that
    already have a run to (task id, status); a status of None: retention deleted it.
    """
    start = max(now - schedule.catch_up_window, first_seen - timedelta(microseconds=1))
    due = schedule.fire_times(start, now)
    missed = [fire for fire in due if fire not in recorded]
    newest = _newest_runnable(schedule, missed, now)
    decisions = [_decide(schedule, fire, now, recorded, newest) for fire in due]
    return decisions + _outlook(schedule, now)


def _newest_runnable(schedule: Schedule, missed: list[datetime], now: datetime) -> datetime | None:
    runnable = [
        fire
        for fire in missed
        if schedule.max_lateness is None or now - fire <= schedule.max_lateness
    ]
    return max(runnable, default=None)


def _decide(
    schedule: Schedule,
    fire: datetime,
    now: datetime,
    recorded: Recorded,
    newest: datetime | None,
) -> Decision:
    def decision(outcome: str, reason: str, task_id: str | None = None) -> Decision:
        return Decision(schedule.name, fire, outcome, reason, schedule.timezone.key, task_id)

    if fire in recorded:
        task_id, status = recorded[fire]
        return decision(RECORDED, f"run recorded: {status or 'its task was deleted'}", task_id)
    late = now - fire
    if schedule.max_lateness is not None and late > schedule.max_lateness:
        return decision(
            SKIPPED, f"{_span(late)} late, over max_lateness of {_span(schedule.max_lateness)}"
        )
    if late <= ON_TIME:
        return decision(ENQUEUE, "on time")
    if schedule.misfire == "skip":
        return decision(SKIPPED, f"missed by {_span(late)} (misfire=skip)")
    if schedule.misfire == "latest" and fire != newest:
        assert newest is not None
        local = newest.astimezone(schedule.timezone)
        return decision(
            SKIPPED, f"superseded by the run of {local:%Y-%m-%d %H:%M} (misfire=latest)"
        )
    return decision(ENQUEUE, f"missed by {_span(late)} (misfire={schedule.misfire})")


def _outlook(schedule: Schedule, now: datetime) -> list[Decision]:
    """Today, in the schedule's timezone: its next run if still to come, or no run at all."""
    today = now.astimezone(schedule.timezone).date()
    fires_today = schedule.fires_on(today)
    tz = schedule.timezone.key
    if not fires_today:
        return [Decision(schedule.name, None, NOT_TODAY, f"no run on {today:%A} ({tz})", tz)]
    upcoming = [fire for fire in fires_today if fire > now]
    if upcoming:
        local = upcoming[0].astimezone(schedule.timezone)
        return [
            Decision(schedule.name, upcoming[0], NOT_DUE, f"next run at {local:%H:%M} {tz}", tz)
        ]
    return []


def _span(delta: timedelta) -> str:
    """A duration as a person writes it: 45s, 12m, 4h 11m, 1d 2h."""
    total = int(delta.total_seconds())
    if total < 60:
        return f"{total}s"
    days, rest = divmod(total // 60, 24 * 60)
    hours, minutes = divmod(rest, 60)
    parts = [(days, "d"), (hours, "h"), (minutes, "m")]
    return " ".join(f"{value}{unit}" for value, unit in parts if value)


def catch_up(
    conn: Connection,
    schedules: Sequence[Schedule],
    settings: Settings,
    now: datetime,
    *,
    dry_run: bool = False,
) -> list[Decision]:
    """Plan every schedule and, unless ``dry_run``, record the decisions."""
    recorded = {
        schedule.name: store.schedules.recorded_runs(
            conn, schedule.name, now - schedule.catch_up_window - timedelta(seconds=1), now
        )
        for schedule in schedules
    }
    # Read after the ledger: a trim that commits in between moves the horizon past
    # every run it deleted, so a run missing from ``recorded`` above is either
    # unrecorded or before the horizon read here, and catch-up never looks there.
    kept_since = store.schedules.runs_kept_since(conn)
    decisions: list[Decision] = []
    for schedule in schedules:
        first_seen = store.schedules.schedule_first_seen(
            conn, schedule.name, now, record=not dry_run
        )
        since = first_seen if kept_since is None else max(first_seen, kept_since)
        planned = plan(schedule, now, since, recorded[schedule.name])
        decisions += [
            _preview(d) if dry_run else _record(conn, schedule, d, settings, now) for d in planned
        ]
    return decisions


def ledger_cutoff(schedules: Sequence[Schedule], now: datetime) -> datetime:
    """Before this instant the runs ledger may forget runs: outside every catch-up window.

    Catch-up looks back over (now - the schedule's window, now], cut at the time the
    schedule was first seen. A ledger row in that range is what makes a run whose task
    retention deleted ``already_recorded`` instead of enqueued again, so every row
    younger than the longest window of any schedule stays (plus ``LEDGER_MARGIN`` for
    clocks that disagree). First-seen only ever starts catch-up later than the window
    does, never earlier, so the windows alone decide what must be kept.
    Should a range later reach further back (a window made longer, a clock set back,
    ``--now`` in the past), the trim's horizon (``store.schedules.runs_kept_since``) cuts it as
    first-seen does: a forgotten run is never run again.
    """
    return now - longest_window(schedules) - LEDGER_MARGIN


def longest_window(schedules: Sequence[Schedule]) -> timedelta:
    """The longest catch-up window of ``schedules`` (the default one when there are none)."""
    return max((s.catch_up_window for s in schedules), default=DEFAULT_CATCH_UP_WINDOW)


class NowOutOfRange(JobplaneError):
    """A catch-up was asked to be evaluated as of a time it may not be."""


def check_preview_time(
    schedules: Sequence[Schedule], now: datetime, clock: datetime, *, dry_run: bool
) -> None:
    """``NowOutOfRange`` unless a catch-up may be evaluated as of ``now`` (the server's
    time being ``clock``).

    Only a dry run may stand in another time for the clock: a catch-up that writes
    records runs, first-seen times and task timestamps, which must be the clock's. And
    only a time inside the catch-up window: from the longest ``catch_up_window`` before
    the clock (what catch-up looks at, and what the runs ledger still remembers) to
    ``PREVIEW_SKEW`` after it. Outside that, a preview would answer from a ledger that has
    forgotten runs, or about a future whose runs nothing has recorded yet.
    """
    if not dry_run:
        raise NowOutOfRange(
            "now is only for a dry run (dryRun: true): a catch-up that records runs does so "
            "as of the server's clock"
        )
    window = longest_window(schedules)
    earliest, latest = clock - window, clock + PREVIEW_SKEW
    if not earliest <= now <= latest:
        raise NowOutOfRange(
            f"now must be inside the catch-up window, from {_iso(earliest)} to {_iso(latest)} "
            f"(the longest catch_up_window, {_span(window)}, before the server's clock, up to "
            f"{_span(PREVIEW_SKEW)} after it), not {now.isoformat()}"
        )


def _iso(instant: datetime) -> str:
    return instant.astimezone(UTC).isoformat(timespec="seconds")


def _preview(decision: Decision) -> Decision:
    return replace(decision, outcome=WOULD_ENQUEUE) if decision.outcome == ENQUEUE else decision


def _record(
    conn: Connection, schedule: Schedule, decision: Decision, settings: Settings, now: datetime
) -> Decision:
    if decision.outcome not in (ENQUEUE, SKIPPED):
        return decision
    task = replace(
        service.build_task(Submission(type=schedule.job), settings, now),
        schedule_name=schedule.name,
        fire_time=decision.fire_time,
    )
    if decision.outcome == SKIPPED:
        task = replace(
            task, status=TaskStatus.SKIPPED.value, error=decision.reason, completed_at=now
        )
    if not store.schedules.insert_scheduled_run(
        conn, task, with_outbox=decision.outcome == ENQUEUE
    ):
        # Another scheduler recorded this run between our read and our write.
        return replace(decision, outcome=RECORDED, reason="run recorded concurrently")
    return replace(decision, task_id=task.id)


def run_now(conn: Connection, schedule: Schedule, settings: Settings, now: datetime) -> str:
    """Enqueue a run of ``schedule`` outside its cron times; returns the task id."""
    task = service.build_task(Submission(type=schedule.job), settings, now)
    task = replace(task, schedule_name=schedule.name)
    store.tasks.insert_tasks(conn, [task])
    return task.id
