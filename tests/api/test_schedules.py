"""Schedules over HTTP and through the CLI: list, run now, catch up; a dry run as of
another time inside the catch-up window."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime, timedelta

import httpx
import pytest
from sqlalchemy import Engine

from jobplane import store
from jobplane.models import utcnow
from jobplane.settings import Settings
from tests.api.test_cli import jobplane
from tests.conftest import row_counts

#: The schedule these tests catch up: every minute, UTC (the Taipei ones are for listing).
EVERY_MINUTE = "every_minute"


@pytest.fixture
def api(api_factory: Callable[..., httpx.Client], pg_settings: Settings) -> httpx.Client:
    jobs = "tests.schedule_jobs,tests.minutely_jobs"
    return api_factory(pg_settings.model_copy(update={"jobs": jobs}))


def first_seen(engine: Engine, schedule: str, when: datetime) -> None:
    """Record that the platform first saw ``schedule`` at ``when`` (as catch-up would)."""
    with engine.begin() as conn:
        store.schedules.schedule_first_seen(conn, schedule, when, record=True)


def catch_up(api: httpx.Client, **body: object) -> list[dict[str, object]]:
    response = api.post("/api/admin/schedules/catch-up", json=body)
    assert response.status_code == 200, response.text
    return past_runs(response.json()["runs"])


def past_runs(runs: list[dict[str, object]]) -> list[dict[str, object]]:
    """The runs of ``EVERY_MINUTE`` due by now (without the outlook's next one, not due)."""
    return [run for run in runs if run["schedule"] == EVERY_MINUTE and run["outcome"] != "not_due"]


def outcomes(runs: list[dict[str, object]]) -> set[object]:
    return {run["outcome"] for run in runs}


def iso(moment: datetime) -> str:
    return moment.isoformat()


def test_a_catch_up_records_each_missed_run_once(api: httpx.Client, pg_engine: Engine) -> None:
    # Given a schedule first seen five minutes ago, whose runs since nobody recorded
    first_seen(pg_engine, EVERY_MINUTE, utcnow() - timedelta(minutes=5))

    # When catch-up runs, then runs again
    runs = catch_up(api)
    before = row_counts(pg_engine)
    again = catch_up(api)

    # Then each missed minute was enqueued once, as of the server's clock, and only once
    assert len(runs) >= 5 and outcomes(runs) == {"enqueued"}
    task = api.get(f"/api/admin/tasks/{runs[0]['taskId']}").json()
    assert (task["status"], task["scheduleName"]) == ("pending", EVERY_MINUTE)
    assert outcomes(again[: len(runs)]) == {"already_recorded"}
    assert row_counts(pg_engine)["tasks"] == before["tasks"] + len(again) - len(runs)


def test_a_dry_run_says_what_would_happen_as_of_a_time_in_the_window_and_writes_nothing(
    api: httpx.Client, pg_engine: Engine
) -> None:
    # Given a schedule first seen an hour ago, none of whose runs was recorded
    first_seen(pg_engine, EVERY_MINUTE, utcnow() - timedelta(hours=1))
    before = row_counts(pg_engine)

    # When a dry run looks at now, and at half an hour ago
    now = catch_up(api, dryRun=True)
    earlier = catch_up(api, dryRun=True, now=iso(utcnow() - timedelta(minutes=30)))

    # Then it says what catch-up would enqueue then, and writes nothing
    assert outcomes(now) == outcomes(earlier) == {"would_enqueue"}
    assert 59 <= len(now) <= 61 and 29 <= len(earlier) <= 31
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
    moment = utcnow().replace(tzinfo=None).isoformat()
    response = api.post("/api/admin/schedules/catch-up", json={"now": moment, "dryRun": True})
    assert response.status_code == 422
    assert row_counts(pg_engine)["tasks"] == 0


def test_only_a_dry_run_may_be_evaluated_as_of_another_time(
    api: httpx.Client, pg_engine: Engine
) -> None:
    first_seen(pg_engine, EVERY_MINUTE, utcnow() - timedelta(hours=1))
    for now in (utcnow(), utcnow() - timedelta(minutes=30), utcnow() + timedelta(days=1800)):
        response = api.post("/api/admin/schedules/catch-up", json={"now": iso(now)})
        assert response.status_code == 422, response.text
        assert response.json()["error"] == "invalid_request"
        assert "now is only for a dry run" in response.json()["message"]
    assert row_counts(pg_engine)["tasks"] == 0


def test_catch_up_refuses_a_time_outside_the_catch_up_window(
    api: httpx.Client, pg_engine: Engine
) -> None:
    # the schedules' longest catch-up window is the default, 24 h
    outside = [
        "0001-01-01T00:00:00+00:00",
        "0001-01-01T00:00:00+01:00",
        "9999-12-31T23:59:59-01:00",
        "2031-01-01T00:00:00+00:00",
        iso(utcnow() - timedelta(hours=25)),
        iso(utcnow() + timedelta(minutes=10)),
    ]
    for now in outside:
        for dry_run in (True, False):
            body = {"now": now, "dryRun": dry_run}
            response = api.post("/api/admin/schedules/catch-up", json=body)
            assert response.status_code == 422, f"{body}: {response.text}"
            message = response.json()["message"]
            assert "catch-up window" in message if dry_run else "only for a dry run" in message
    assert row_counts(pg_engine)["tasks"] == 0


def test_a_dry_run_may_look_back_a_whole_window_and_a_few_minutes_ahead(
    api: httpx.Client,
) -> None:
    for now in (utcnow() - timedelta(hours=23, minutes=59), utcnow() + timedelta(minutes=4)):
        catch_up(api, dryRun=True, now=iso(now))


def test_the_cli_prints_catch_up_for_people_and_for_scripts(
    api: httpx.Client, pg_engine: Engine
) -> None:
    url = str(api.base_url)
    first_seen(pg_engine, EVERY_MINUTE, utcnow() - timedelta(hours=1))
    half_an_hour_ago = iso(utcnow() - timedelta(minutes=30))

    preview = jobplane("schedules", "catch-up", "--dry-run", "--now", half_an_hour_ago, url=url)
    assert preview.returncode == 0, preview.stderr
    assert "catch-up (dry run: nothing written) as of" in preview.stdout
    assert "would enqueue" in preview.stdout
    assert "not scheduled today" in preview.stdout or "not due yet" in preview.stdout
    assert row_counts(pg_engine)["tasks"] == 0

    done = jobplane("schedules", "catch-up", "--json", url=url)
    runs = past_runs(json.loads(done.stdout)["runs"])
    assert {run["outcome"] for run in runs} == {"enqueued"}

    listed = jobplane("schedules", "ls", url=url)
    assert "sync_daily_prices" in listed.stdout and "misfire=latest" in listed.stdout
    ran = jobplane("schedules", "run", "weekly_report", "--json", url=url)
    assert json.loads(ran.stdout)["taskType"] == "weekly_report"
    assert jobplane("schedules", "catch-up", "--now", "yesterday", url=url).returncode == 2


def test_the_cli_refuses_now_without_dry_run_and_outside_the_window(
    api: httpx.Client, pg_engine: Engine
) -> None:
    url = str(api.base_url)
    writing = jobplane("schedules", "catch-up", "--now", iso(utcnow()), url=url)
    assert writing.returncode == 2
    assert "--now is only for a dry run" in writing.stderr
    future = jobplane("schedules", "catch-up", "--dry-run", "--now", "2031-01-01T00:00Z", url=url)
    assert future.returncode == 1
    assert "422: now must be inside the catch-up window" in future.stderr
    assert "Traceback" not in future.stderr + writing.stderr
    assert row_counts(pg_engine)["tasks"] == 0
