"""Numbers and flags are taken as sent: ``true`` is not 1, ``"5"`` is not 5, and ``1.0``
is not an integer. Each is a 422 naming the field, and nothing is written."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest
from sqlalchemy import Engine

from tests.conftest import row_counts


@pytest.fixture
def api_and_engine(
    api_on: Callable[[str], tuple[httpx.Client, Engine]], sqlite_url: str
) -> tuple[httpx.Client, Engine]:
    return api_on(sqlite_url)


LOOSE_NUMBERS = [
    (field, value)
    for field in ("priority", "maxRetries", "timeoutSeconds")
    for value in ("true", "false", '"5"', "1.0", "1e2")
] + [("delaySeconds", value) for value in ("true", '"5"', "NaN", "Infinity", "null")]


def test_a_number_sent_as_a_bool_a_string_or_a_float_is_a_422_naming_the_field(
    api_and_engine: tuple[httpx.Client, Engine],
) -> None:
    api, engine = api_and_engine
    for field, value in LOOSE_NUMBERS:
        submission = f'{{"type": "demo.noop", "{field}": {value}}}'
        batch = f'{{"tasks": [{submission}]}}'
        for path, body in (("/api/tasks", submission), ("/api/tasks/batch", batch)):
            response = api.post(path, content=body, headers={"Content-Type": "application/json"})
            assert response.status_code == 422, f"{path} {body}: {response.text}"
            assert response.json()["error"] == "invalid_request"
            assert field in response.json()["message"]
    assert row_counts(engine)["tasks"] == 0


def test_whole_numbers_are_still_accepted_and_stored_as_sent(
    api_and_engine: tuple[httpx.Client, Engine],
) -> None:
    api, _engine = api_and_engine
    body = {"type": "demo.noop", "priority": -3, "maxRetries": 0, "timeoutSeconds": 9}
    created = api.post("/api/tasks", json={**body, "delaySeconds": 2}).json()
    assert (created["priority"], created["maxRetries"], created["timeoutSeconds"]) == (-3, 0, 9)
    assert api.post("/api/tasks", json={**body, "delaySeconds": 0.5}).status_code == 201


def test_catch_up_takes_dry_run_only_as_a_json_boolean(
    api_and_engine: tuple[httpx.Client, Engine],
) -> None:
    api, engine = api_and_engine
    for dry_run in ('"true"', "1", "0", '"yes"'):
        response = api.post(
            "/api/admin/schedules/catch-up",
            content=f'{{"dryRun": {dry_run}}}',
            headers={"Content-Type": "application/json"},
        )
        assert response.status_code == 422, response.text
        assert "dryRun" in response.json()["message"]
    assert row_counts(engine)["tasks"] == 0


#: Query numbers that are not numbers of their kind.
LOOSE_QUERIES = [
    ("/api/admin/tasks", {"page": "true"}),
    ("/api/admin/tasks", {"pageSize": "1.5"}),
    ("/api/admin/tasks", {"page": "1e3"}),
    ("/api/tasks/{id}", {"wait": "nan"}),
    ("/api/tasks/{id}", {"wait": "true"}),
    ("/api/tasks/{id}", {"wait": "inf"}),
    ("/api/admin/events", {"maxSeconds": "nan"}),
    ("/api/admin/events", {"maxSeconds": "false"}),
]


def test_a_query_number_that_is_not_a_number_is_a_422_naming_it(
    api_and_engine: tuple[httpx.Client, Engine],
) -> None:
    api, _engine = api_and_engine
    task_id = api.post("/api/tasks", json={"type": "demo.noop"}).json()["taskId"]
    for path, query in LOOSE_QUERIES:
        response = api.get(path.format(id=task_id), params=query)
        assert response.status_code == 422, f"{path} {query}: {response.text}"
        assert next(iter(query)) in response.json()["message"]
