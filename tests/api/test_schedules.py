"""Schedules over HTTP and through the CLI: list, run now, catch-up as of any time."""

from __future__ import annotations

import json
from collections.abc import Callable

import httpx
import pytest
from sqlalchemy import Engine

from jobplane.settings import Settings
from tests.api.test_cli import jobplane
from tests.conftest import row_counts

# Tuesday 2025-12-16 19:41 in Taipei: after the day's 15:30 run, before its 21:00 run
TUESDAY_1941 = "2025-12-16T19:41:00+08:00"
MONDAY_NOON = "2025-12-15T12:00:00+08:00"


@pytest.fixture
def api(api_factory: Callable[..., httpx.Client], pg_settings: Settings) -> httpx.Client:
    return api_factory(pg_settings.model_copy(update={"jobs": "tests.schedule_jobs"}))


def catch_up(api: httpx.Client, now: str, dry_run: bool = False) -> list[dict[str, object]]:
    response = api.post("/api/admin/schedules/catch-up", json={"now": now, "dryRun": dry_run})
    assert response.status_code == 200, response.text
    return list(response.json()["runs"])


def by_schedule(runs: list[dict[str, object]]) -> dict[str, list[object]]:
    result: dict[str, list[object]] = {}
    for run in runs:
        result.setdefault(str(run["schedule"]), []).append(run["outcome"])
    return result


def test_catch_up_at_tuesday_1941_taipei_gives_the_seeds_answer(
    api: httpx.Client, pg_engine: Engine
) -> None:
    catch_up(api, MONDAY_NOON)  # the platform first saw the schedules on Monday at noon

    runs = catch_up(api, TUESDAY_1941)

    outcomes = by_schedule(runs)
    assert outcomes["sync_shioaji_futures"] == ["enqueued"]  # 15:30 today never ran
    assert outcomes["sync_daily_prices"] == ["enqueued", "not_due"]  # Monday 21:00; 21:00 later
    assert outcomes["weekly_report"] == ["not_scheduled_today"]
    futures = next(r for r in runs if r["schedule"] == "sync_shioaji_futures")
    assert futures["fireTime"] == "2025-12-16T15:30:00+08:00"  # in the schedule's own timezone
    assert futures["taskId"]
    task = api.get(f"/api/admin/tasks/{futures['taskId']}").json()
    assert (task["status"], task["scheduleName"]) == ("pending", "sync_shioaji_futures")

    # A second catch-up enqueues nothing more
    before = row_counts(pg_engine)
    again = by_schedule(catch_up(api, TUESDAY_1941))
    assert again["sync_shioaji_futures"] == ["already_recorded"]
    assert row_counts(pg_engine) == before


def test_a_dry_run_says_what_would_happen_and_writes_nothing(
    api: httpx.Client, pg_engine: Engine
) -> None:
    catch_up(api, MONDAY_NOON)
    before = row_counts(pg_engine)
    outcomes = by_schedule(catch_up(api, TUESDAY_1941, dry_run=True))
    assert outcomes["sync_shioaji_futures"] == ["would_enqueue"]
    assert row_counts(pg_engine) == before


def test_schedules_are_listed_and_can_run_now(api: httpx.Client) -> None:
    listed = api.get("/api/admin/schedules").json()["schedules"]
    futures = next(s for s in listed if s["name"] == "sync_shioaji_futures")
    assert (futures["cron"], futures["timezone"], futures["misfire"]) == (
        "30 15 * * 1-5",
        "Asia/Taipei",
        "all",
    )
    assert futures["nextFireTime"].endswith("+08:00")
    assert futures["lastRun"] is None

    ran = api.post("/api/admin/schedules/sync_shioaji_futures/run")
    assert ran.status_code == 201
    assert ran.json()["scheduleName"] == "sync_shioaji_futures"
    assert ran.json()["fireTime"] is None
    listed = api.get("/api/admin/schedules").json()["schedules"]
    last = next(s for s in listed if s["name"] == "sync_shioaji_futures")["lastRun"]
    assert (last["taskId"], last["status"]) == (ran.json()["taskId"], "pending")

    missing = api.post("/api/admin/schedules/nope/run")
    assert missing.status_code == 404 and "known schedules" in missing.json()["message"]


def test_catch_up_refuses_a_time_without_offset(api: httpx.Client, pg_engine: Engine) -> None:
    response = api.post("/api/admin/schedules/catch-up", json={"now": "2025-12-16T19:41:00"})
    assert response.status_code == 422
    assert row_counts(pg_engine)["tasks"] == 0


@pytest.mark.parametrize("now", ["0001-01-01T00:00:00+00:00", "9999-12-31T23:59:59-01:00"])
def test_catch_up_refuses_a_time_no_schedule_can_be_replayed_on(
    api: httpx.Client, pg_engine: Engine, now: str
) -> None:
    response = api.post("/api/admin/schedules/catch-up", json={"now": now, "dryRun": True})
    assert response.status_code == 422
    assert "1970 to 2999" in response.json()["message"]
    assert row_counts(pg_engine)["tasks"] == 0


def test_the_cli_prints_catch_up_for_people_and_for_scripts(api: httpx.Client) -> None:
    url = str(api.base_url)
    jobplane("schedules", "catch-up", "--now", MONDAY_NOON, url=url)

    preview = jobplane("schedules", "catch-up", "--dry-run", "--now", TUESDAY_1941, url=url)
    assert preview.returncode == 0, preview.stderr
    assert "2025-12-16T15:30:00+08:00  would enqueue" in preview.stdout
    assert "not due yet  (next run at 21:00 Asia/Taipei)" in preview.stdout
    assert "not scheduled today" in preview.stdout

    done = jobplane("schedules", "catch-up", "--json", "--now", TUESDAY_1941, url=url)
    outcomes = by_schedule(json.loads(done.stdout)["runs"])
    assert outcomes["sync_shioaji_futures"] == ["enqueued"]

    listed = jobplane("schedules", "ls", url=url)
    assert "sync_daily_prices" in listed.stdout and "misfire=latest" in listed.stdout
    ran = jobplane("schedules", "run", "weekly_report", "--json", url=url)
    assert json.loads(ran.stdout)["taskType"] == "weekly_report"
    assert jobplane("schedules", "catch-up", "--now", "yesterday", url=url).returncode == 2
