"""The admin list and health endpoints."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from jobplane.settings import Settings


def test_the_admin_list_pages_newest_first_and_filters(pg_api: httpx.Client) -> None:
    ids = pg_api.post(
        "/api/tasks/batch",
        json={"tasks": [{"type": "demo.echo"}] * 3 + [{"type": "demo.noop", "queue": "q2"}] * 2},
    ).json()["taskIds"]

    page = pg_api.get("/api/admin/tasks", params={"pageSize": 2}).json()
    assert (page["total"], page["page"], page["pageSize"], len(page["tasks"])) == (5, 1, 2, 2)
    last = pg_api.get("/api/admin/tasks", params={"pageSize": 2, "page": 3}).json()
    assert len(last["tasks"]) == 1
    seen = {
        t["taskId"]
        for p in (1, 2, 3)
        for t in pg_api.get("/api/admin/tasks", params={"pageSize": 2, "page": p}).json()["tasks"]
    }
    assert seen == set(ids)

    assert pg_api.get("/api/admin/tasks", params={"type": "demo.noop"}).json()["total"] == 2
    assert pg_api.get("/api/admin/tasks", params={"queue": "q2"}).json()["total"] == 2
    assert pg_api.get("/api/admin/tasks", params={"status": "pending"}).json()["total"] == 5
    assert pg_api.get("/api/admin/tasks", params={"status": "completed"}).json()["total"] == 0
    summary = page["tasks"][0]
    assert {
        "taskId",
        "taskType",
        "status",
        "progress",
        "total",
        "percent",
        "createdAt",
        "startedAt",
    } <= set(summary)


@pytest.mark.parametrize(
    "query",
    [{"status": "sleeping"}, {"page": 0}, {"pageSize": 501}, {"pageSize": 0}, {"page": "x"}],
)
def test_bad_list_queries_are_422(pg_api: httpx.Client, query: dict[str, object]) -> None:
    response = pg_api.get("/api/admin/tasks", params=query)
    assert response.status_code == 422
    assert response.json()["error"] == "invalid_request"


def test_readyz_checks_the_database_and_the_broker(pg_api: httpx.Client) -> None:
    answer = pg_api.get("/readyz")
    assert answer.status_code == 200
    assert answer.json()["checks"] == {"database": "ok", "broker": "ok"}


def test_readyz_is_503_with_retry_after_when_the_broker_is_down(
    api_factory: Callable[..., httpx.Client], pg_settings: Settings
) -> None:
    client = api_factory(pg_settings.model_copy(update={"broker_url": "redis://127.0.0.1:1/0"}))
    answer = client.get("/readyz")
    assert answer.status_code == 503
    assert answer.headers["Retry-After"]
    assert answer.json()["checks"] == {"database": "ok", "broker": "unavailable"}


def test_readyz_names_the_failed_check_and_leaves_the_details_to_the_log(
    api_factory: Callable[..., httpx.Client], caplog: pytest.LogCaptureFixture
) -> None:
    # Given an API whose database URL names a host, a user and a password it cannot reach
    url = "postgresql+psycopg://secretuser:hunter2@127.0.0.1:1/secretdb"
    client = api_factory(Settings(database_url=url, broker_url="memory://"))

    # When anyone asks whether it is ready
    answer = client.get("/readyz")

    # Then it says which check failed, and nothing of the driver's message
    assert answer.status_code == 503
    assert answer.json() == {
        "status": "unavailable",
        "checks": {"database": "unavailable", "broker": "ok"},
    }
    for secret in ("secretuser", "hunter2", "secretdb", "127.0.0.1", "psycopg", "connection"):
        assert secret not in answer.text.lower(), secret
    # And the log has what an operator needs
    assert any(
        "database is unavailable" in record.getMessage()
        and "OperationalError" in record.getMessage()
        for record in caplog.records
    )


def test_the_api_answers_503_while_the_database_is_unreachable(
    api_factory: Callable[..., httpx.Client],
) -> None:
    settings = Settings(database_url="postgresql+psycopg://postgres@127.0.0.1:1/none")
    client = api_factory(settings)
    response = client.post("/api/tasks", json={"type": "demo.noop"})
    assert response.status_code == 503
    assert response.headers["Retry-After"]
    assert response.json()["error"] == "database_unavailable"
    assert client.get("/healthz").status_code == 200
