"""Schedules: list them with how their runs went, run one now, catch up."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, Request

from jobplane import store
from jobplane.api.auth import require_token
from jobplane.api.schemas import (
    CatchUpRequest,
    CatchUpResult,
    LastRun,
    Problem,
    RunDecision,
    ScheduleInfo,
    ScheduleList,
    TaskDetail,
)
from jobplane.api.tasks import EngineDep, load_task
from jobplane.maintenance import catchup
from jobplane.models import utcnow
from jobplane.schedules import Schedule, all_schedules, get_schedule

router = APIRouter(
    prefix="/api/admin/schedules",
    tags=["schedules"],
    dependencies=[Depends(require_token)],
    responses={401: {"model": Problem}},
)


@router.get("", response_model=ScheduleList)
def list_schedules(request: Request, engine: EngineDep) -> ScheduleList:
    """Every schedule: cron, timezone, policy, next run, last run, missed and skipped runs."""
    now = utcnow()
    schedules = all_schedules()
    with engine.connect() as conn:
        outlook = catchup.catch_up(conn, schedules, request.app.state.settings, now, dry_run=True)
        infos = [_info(conn, schedule, outlook, now) for schedule in schedules]
    return ScheduleList(schedules=infos)


def _info(
    conn: object, schedule: Schedule, outlook: list[catchup.Decision], now: datetime
) -> ScheduleInfo:
    last, skipped = store.schedules.schedule_runs_summary(conn, schedule.name)  # type: ignore[arg-type]
    missed = sum(
        1
        for d in outlook
        if d.schedule == schedule.name and d.outcome in (catchup.WOULD_ENQUEUE, catchup.SKIPPED)
    )
    return ScheduleInfo(
        name=schedule.name,
        job=schedule.job,
        cron=schedule.cron_text,
        timezone=schedule.timezone.key,
        misfire=schedule.misfire,
        max_lateness=schedule.max_lateness.total_seconds() if schedule.max_lateness else None,
        catch_up_window=schedule.catch_up_window.total_seconds(),
        next_fire_time=_local(schedule.next_fire_time(now), schedule.timezone),
        last_run=LastRun(
            task_id=last.task_id,
            fire_time=_local(last.fire_time, schedule.timezone),
            status=last.status,
        )
        if last
        else None,
        missed_count=missed,
        skipped_count=skipped,
    )


@router.post(
    "/{name}/run", status_code=201, response_model=TaskDetail, responses={404: {"model": Problem}}
)
def run_schedule(name: str, request: Request, engine: EngineDep) -> TaskDetail:
    """Run a schedule now, as a normal task that records its schedule."""
    schedule = get_schedule(name)
    with engine.begin() as conn:
        task_id = catchup.run_now(conn, schedule, request.app.state.settings, utcnow())
    return TaskDetail.from_task(load_task(engine, task_id))


@router.post("/catch-up", response_model=CatchUpResult)
def catch_up(body: CatchUpRequest, request: Request, engine: EngineDep) -> CatchUpResult:
    """Enqueue or record skipped every missed run now (``dryRun``: only say what would happen)."""
    now = utcnow()
    schedules = all_schedules()
    if body.now is not None:
        catchup.check_preview_time(schedules, body.now, now, dry_run=body.dry_run)
        now = body.now
    # A dry run only reads: on SQLite it then leaves the write lock to the writers.
    with engine.connect() if body.dry_run else engine.begin() as conn:
        decisions = catchup.catch_up(
            conn, schedules, request.app.state.settings, now, dry_run=body.dry_run
        )
    zones = {s.name: s.timezone for s in schedules}
    return CatchUpResult(
        runs=[
            RunDecision(
                schedule=d.schedule,
                fire_time=_local(d.fire_time, zones[d.schedule]),
                outcome=d.outcome,
                reason=d.reason,
                timezone=d.timezone,
                task_id=d.task_id,
            )
            for d in decisions
        ]
    )


def _local(instant: datetime | None, zone: ZoneInfo) -> datetime | None:
    return instant.astimezone(zone) if instant is not None else None
