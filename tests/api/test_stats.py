"""Stats, job types, the id search, read-only tokens and ``jobplane stats``."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import Engine

from jobplane import store
from jobplane.models import utcnow
from jobplane.settings import Settings
from tests.api.test_cli import jobplane

TOKEN, READ_ONLY = "stats-read-write-token", "stats-read-only-token"


@pytest.fixture
def api(api_factory: Callable[..., httpx.Client], pg_settings: Settings) -> httpx.Client:
    settings = pg_settings.model_copy(update={"api_token": TOKEN, "read_only_token": READ_ONLY})
    return api_factory(settings, token=TOKEN)


def submit(api: httpx.Client, count: int, job_type: str = "demo.echo") -> list[str]:
    answer = api.post("/api/tasks/batch", json={"tasks": [{"type": job_type}] * count})
    assert answer.status_code == 201, answer.text
    ids: list[str] = answer.json()["taskIds"]
    return ids


def run(engine: Engine, task_id: str, *, worker: str, finish: bool, seen_ago: float = 0.0) -> None:
    """What a worker does: report in (``seen_ago`` s ago), claim the task, maybe complete it."""
    now = utcnow()
    with engine.begin() as conn:
        store.workers.report(conn, worker, now - timedelta(seconds=seen_ago))
        assert store.claims.claim_task(conn, task_id, 1, worker=worker, now=now) is not None
        if finish:
            assert store.claims.complete_task(conn, task_id, 1, result=None, now=now)


def test_stats_count_tasks_by_status_and_show_the_outbox_and_the_workers(
    api: httpx.Client, pg_engine: Engine
) -> None:
    # Given five submitted tasks, two run by worker a (one still running), one by b
    ids = submit(api, 5)
    run(pg_engine, ids[0], worker="host-a:1", finish=True)
    run(pg_engine, ids[1], worker="host-a:1", finish=False)
    run(pg_engine, ids[2], worker="host-b:2", finish=True)
    # And a worker whose last report is too old to count
    run(pg_engine, ids[3], worker="host-old:3", finish=True, seen_ago=3600)

    # When the stats are read
    answer = api.get("/api/admin/stats")

    # Then every status is counted, the outbox holds the five unpublished rows
    assert answer.status_code == 200
    stats = answer.json()
    assert {"pending", "running", "completed", "failed", "cancelled"} <= set(stats["counts"])
    counted = {status: n for status, n in stats["counts"].items() if n}
    assert counted == {"pending": 1, "running": 1, "completed": 3}
    assert stats["total"] == 5
    assert stats["outbox"]["backlog"] == 5
    assert 0 <= stats["outbox"]["oldestAgeSeconds"] < 60
    # And the workers seen recently are listed with what they run now
    workers = {w["worker"]: w for w in stats["workers"]}
    assert set(workers) == {"host-a:1", "host-b:2"}
    assert (workers["host-a:1"]["running"], workers["host-b:2"]["running"]) == (1, 0)
    assert workers["host-a:1"]["lastHeartbeatAt"]


def test_an_empty_platform_has_no_outbox_age(api: httpx.Client) -> None:
    stats = api.get("/api/admin/stats").json()
    assert stats["total"] == 0 and set(stats["counts"].values()) == {0}
    assert stats["outbox"] == {"backlog": 0, "oldestCreatedAt": None, "oldestAgeSeconds": None}
    assert stats["workers"] == []


def test_job_types_list_the_registered_jobs_with_their_params(api: httpx.Client) -> None:
    types = {job["name"]: job for job in api.get("/api/admin/job-types").json()["jobTypes"]}
    assert {"demo.sleep", "demo.echo", "demo.fail", "demo.noop"} <= set(types)
    sleep = types["demo.sleep"]
    assert sleep["params"] == [
        {"name": "seconds", "required": False, "default": 1.0},
        {"name": "steps", "required": False, "default": 1},
    ]
    assert (sleep["queue"], sleep["maxRetries"], sleep["timeoutSeconds"]) == ("default", 3, 14400)
    assert types["demo.echo"]["acceptsAnyParams"] is True


def test_the_task_list_searches_by_the_start_of_the_id(api: httpx.Client) -> None:
    ids = submit(api, 3)
    start = ids[1][:13].upper()  # case does not matter
    found = api.get("/api/admin/tasks", params={"search": start}).json()
    assert [task["taskId"] for task in found["tasks"]] == [ids[1]]
    assert (found["total"], found["totalIsEstimate"]) == (1, False)
    # Not the middle of an id, and nothing an id cannot hold (LIKE's wildcards included)
    for search in (ids[1][9:18], "%", "_", "zz"):
        found = api.get("/api/admin/tasks", params={"search": search}).json()
        assert (found["tasks"], found["total"]) == ([], 0), search


def test_a_search_matching_more_tasks_than_are_counted_gives_an_estimated_total(
    api: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given 40 tasks, and a search whose matches are counted up to 5 only
    monkeypatch.setattr(store.tasks, "EXACT_SEARCH_TOTAL", 5)
    ids = submit(api, 40)
    # When every id's first digit is searched for, in turn
    for digit in "0123456789abcdef":
        matching = sum(task_id.startswith(digit) for task_id in ids)
        found = api.get("/api/admin/tasks", params={"search": digit, "pageSize": 50}).json()
        # Then the page is exact; the total is exact up to 5, and an estimate past it
        assert len(found["tasks"]) == matching
        if matching <= 5:
            assert (found["total"], found["totalIsEstimate"]) == (matching, False)
        else:
            assert found["totalIsEstimate"] is True and found["total"] >= 6


def test_filtered_totals_come_exact_from_the_counts(api: httpx.Client, pg_engine: Engine) -> None:
    submit(api, 3, "demo.echo")
    submit(api, 2, "demo.noop")
    task_id = submit(api, 1, "demo.noop")[0]
    run(pg_engine, task_id, worker="host-a:1", finish=True)
    totals = {
        filters: api.get("/api/admin/tasks", params=dict(filters)).json()["total"]
        for filters in (
            (),
            (("type", "demo.noop"),),
            (("status", "pending"),),
            (("status", "completed"), ("type", "demo.noop")),
            (("queue", "default"), ("status", "running")),
        )
    }
    assert list(totals.values()) == [6, 3, 5, 1, 0]


def test_a_read_only_token_reads_but_cannot_change_anything(
    api: httpx.Client,
) -> None:
    # Given a task, and a client with the read-only token
    task_id = submit(api, 1)[0]
    reader = httpx.Client(
        base_url=api.base_url, headers={"Authorization": f"Bearer {READ_ONLY}"}, timeout=10
    )
    with reader:
        # Then it may read
        for path in ("/api/admin/stats", "/api/admin/tasks", f"/api/tasks/{task_id}"):
            assert reader.get(path).status_code == 200, path
        # But every change is 403, saying which token is needed
        for path, body in (
            ("/api/tasks", {"type": "demo.noop"}),
            (f"/api/admin/tasks/{task_id}/cancel", None),
            (f"/api/admin/tasks/{task_id}/retry", None),
        ):
            answer = reader.post(path, json=body)
            assert answer.status_code == 403, path
            assert answer.json()["error"] == "forbidden"
            assert "read-write token" in answer.json()["message"]
    # And nothing changed
    assert api.get(f"/api/tasks/{task_id}").json()["status"] == "pending"
    assert api.get("/api/admin/stats").json()["total"] == 1


def test_a_read_only_token_needs_a_read_write_token_beside_it() -> None:
    with pytest.raises(ValueError, match="needs JOBPLANE_API_TOKEN"):
        Settings(read_only_token="a-read-only-token-alone")
    with pytest.raises(ValueError, match="must differ"):
        Settings(api_token="the-same-token-twice", read_only_token="the-same-token-twice")


def test_jobplane_stats_prints_a_table_and_json(api: httpx.Client) -> None:
    submit(api, 2)
    url = str(api.base_url)

    as_json = jobplane("stats", "--json", url=url, token=READ_ONLY)
    assert as_json.returncode == 0, as_json.stderr
    assert json.loads(as_json.stdout)["counts"]["pending"] == 2

    table = jobplane("stats", url=url, token=TOKEN)
    assert table.returncode == 0, table.stderr
    assert "pending" in table.stdout and "2 row(s) waiting" in table.stdout
    assert "WORKERS" in table.stdout

    refused = jobplane("stats", url=url, token="wrong")
    assert refused.returncode == 1
    assert "401" in refused.stderr


def test_jobplane_tasks_ls_searches_by_part_of_the_id(api: httpx.Client) -> None:
    ids = submit(api, 2)
    listed = jobplane(
        "tasks", "ls", "--search", ids[0][:8], "--json", url=str(api.base_url), token=TOKEN
    )
    assert listed.returncode == 0, listed.stderr
    assert [task["taskId"] for task in json.loads(listed.stdout)["tasks"]] == [ids[0]]
