"""Submitting over HTTP: the task and its outbox row, idempotency, batches, bad input."""

from __future__ import annotations

import json
import socket
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, select

from jobplane.models import Outbox, Task
from jobplane.settings import Settings
from tests.conftest import row_counts


def test_a_submission_answers_201_with_the_task_and_writes_its_outbox_row(
    pg_api: httpx.Client, pg_engine: Engine
) -> None:
    # When a client submits a job
    response = pg_api.post("/api/tasks", json={"type": "demo.echo", "params": {"days": 60}})

    # Then it gets the pending task back, in the clients' camelCase shape
    assert response.status_code == 201
    task = response.json()
    assert task["taskType"] == "demo.echo"
    assert task["status"] == "pending"
    assert task["params"] == {"days": 60}
    assert task["queue"] == "default"
    assert (task["progress"], task["total"], task["percent"]) == (0, 0, 0)
    assert (task["attempts"], task["retryCount"], task["error"]) == (0, 0, None)
    assert task["createdAt"].endswith("Z") or "+00:00" in task["createdAt"]
    # And the task row and its outbox row are both committed
    with pg_engine.connect() as conn:
        assert (
            conn.execute(select(Task.status).where(Task.id == task["taskId"])).scalar() == "pending"
        )
        assert conn.execute(
            select(Outbox.dispatch).where(Outbox.task_id == task["taskId"])
        ).all() == [(1,)]
    # And the submitter can read it back, as can an admin
    assert pg_api.get(f"/api/tasks/{task['taskId']}").json()["taskId"] == task["taskId"]
    assert pg_api.get(f"/api/admin/tasks/{task['taskId']}").json()["params"] == {"days": 60}


def test_submission_options_are_stored(pg_api: httpx.Client) -> None:
    body = {
        "type": "demo.sleep",
        "params": {"seconds": 1},
        "queue": "reports",
        "priority": 5,
        "delaySeconds": 60,
        "maxRetries": 0,
        "timeoutSeconds": 30,
    }
    task = pg_api.post("/api/tasks", json=body).json()
    assert (task["queue"], task["priority"], task["maxRetries"], task["timeoutSeconds"]) == (
        "reports",
        5,
        0,
        30,
    )
    assert task["runAfter"] > task["createdAt"]


def test_the_same_idempotency_key_and_body_returns_the_same_task(
    pg_api: httpx.Client, pg_engine: Engine
) -> None:
    body = {"type": "demo.echo", "params": {"a": 1}}
    first = pg_api.post("/api/tasks", json=body, headers={"Idempotency-Key": "k-1"})
    again = pg_api.post("/api/tasks", json=body, headers={"Idempotency-Key": "k-1"})
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json()["taskId"] == first.json()["taskId"]
    assert row_counts(pg_engine)["tasks"] == 1


def test_the_same_idempotency_key_with_another_body_is_a_conflict(
    pg_api: httpx.Client, pg_engine: Engine
) -> None:
    first = pg_api.post(
        "/api/tasks",
        json={"type": "demo.echo", "params": {"a": 1}},
        headers={"Idempotency-Key": "k"},
    )
    before = row_counts(pg_engine)
    conflict = pg_api.post(
        "/api/tasks",
        json={"type": "demo.echo", "params": {"a": 2}},
        headers={"Idempotency-Key": "k"},
    )
    assert conflict.status_code == 409
    assert conflict.json()["error"] == "idempotency_conflict"
    assert conflict.json()["taskId"] == first.json()["taskId"]
    assert row_counts(pg_engine) == before


def test_a_batch_is_written_in_one_transaction_and_answers_ids_in_order(
    pg_api: httpx.Client, pg_engine: Engine
) -> None:
    tasks = [{"type": "demo.echo", "params": {"i": i}} for i in range(1000)]
    response = pg_api.post("/api/tasks/batch", json={"tasks": tasks})
    assert response.status_code == 201
    ids = response.json()["taskIds"]
    assert len(ids) == len(set(ids)) == 1000
    assert pg_api.get(f"/api/tasks/{ids[0]}").json()["params"] == {"i": 0}
    assert pg_api.get(f"/api/tasks/{ids[-1]}").json()["params"] == {"i": 999}
    assert row_counts(pg_engine) == {"tasks": 1000, "outbox": 1000, "task_logs": 0}


def test_a_batch_with_one_bad_submission_writes_nothing(
    pg_api: httpx.Client, pg_engine: Engine
) -> None:
    tasks = [{"type": "demo.echo"}, {"type": "nope"}, {"type": "demo.noop"}]
    response = pg_api.post("/api/tasks/batch", json={"tasks": tasks})
    assert response.status_code == 422
    assert response.json()["message"].startswith("tasks[1]: unknown job type 'nope'")
    assert row_counts(pg_engine) == {"tasks": 0, "outbox": 0, "task_logs": 0}


BAD_SUBMISSIONS = [
    pytest.param({"type": "reports.nope"}, 422, "unknown_job_type", id="unknown type"),
    pytest.param(
        {"type": "demo.echo", "params": [1, 2]}, 422, "invalid_request", id="params not an object"
    ),
    pytest.param(
        {"type": "demo.echo", "params": "x"}, 422, "invalid_request", id="params a string"
    ),
    pytest.param(
        {"type": "demo.echo", "params": {"blob": "x" * (64 * 1024)}},
        413,
        "params_too_large",
        id="params > 64 KiB",
    ),
    pytest.param(
        {"type": "demo.sleep", "params": {"bogus": 1}},
        422,
        "invalid_params",
        id="params unknown to the job",
    ),
    pytest.param(
        {"type": "demo.echo", "params": {"a": "a\x00b"}}, 422, "invalid_params", id="NUL in params"
    ),
    pytest.param(
        {"type": "demo.echo", "params": {"a": "\udc80"}},
        422,
        "invalid_params",
        id="lone surrogate in params",
    ),
    pytest.param(
        {"type": "demo.noop", "queue": "no spaces"}, 422, "invalid_params", id="bad queue name"
    ),
    pytest.param(
        {"type": "demo.noop", "delaySeconds": -1}, 422, "invalid_request", id="negative delay"
    ),
    pytest.param(
        {"type": "demo.noop", "maxRetries": -1}, 422, "invalid_request", id="negative retries"
    ),
    pytest.param({"type": "demo.noop", "surprise": 1}, 422, "invalid_request", id="unknown field"),
    pytest.param({}, 422, "invalid_request", id="no type"),
]


@pytest.mark.parametrize(("body", "status", "code"), BAD_SUBMISSIONS)
def test_bad_input_gets_a_clear_4xx_and_changes_nothing(
    pg_api: httpx.Client, pg_engine: Engine, body: dict[str, object], status: int, code: str
) -> None:
    # Sent as JSON text with \u escapes, as a client in any language may send a lone
    # surrogate (httpx's json= cannot encode one).
    sent = json.dumps(body)
    response = pg_api.post("/api/tasks", content=sent, headers={"Content-Type": "application/json"})
    assert response.status_code == status
    assert response.json()["error"] == code
    assert response.json()["message"]
    assert row_counts(pg_engine) == {"tasks": 0, "outbox": 0, "task_logs": 0}


def test_an_unknown_job_type_lists_the_known_ones(pg_api: httpx.Client) -> None:
    answer = pg_api.post("/api/tasks", json={"type": "nope"}).json()
    assert "demo.echo" in answer["knownTypes"]
    assert "demo.echo" in answer["message"]


def test_a_body_that_is_not_json_is_a_422(pg_api: httpx.Client, pg_engine: Engine) -> None:
    response = pg_api.post(
        "/api/tasks", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert response.status_code == 422
    assert row_counts(pg_engine)["tasks"] == 0


def test_an_unknown_task_is_a_404(pg_api: httpx.Client) -> None:
    for path in ("/api/tasks/nope", "/api/admin/tasks/nope"):
        response = pg_api.get(path)
        assert response.status_code == 404
        assert response.json()["error"] == "task_not_found"


def test_with_a_token_set_every_api_route_needs_it(
    api_factory: Callable[..., httpx.Client], pg_settings: Settings, pg_engine: Engine
) -> None:
    settings = pg_settings.model_copy(update={"api_token": "submit-test-token-0123"})
    anonymous = api_factory(settings)
    for method, path in [
        ("POST", "/api/tasks"),
        ("POST", "/api/tasks/batch"),
        ("GET", "/api/tasks/x"),
        ("GET", "/api/admin/tasks"),
        ("GET", "/api/admin/tasks/x"),
    ]:
        response = anonymous.request(method, path, json={"type": "demo.noop"})
        assert response.status_code == 401, path
        assert "Authorization: Bearer" in response.json()["message"]
    wrong = anonymous.get("/api/admin/tasks", headers={"Authorization": "Bearer nope"})
    assert (wrong.status_code, wrong.json()["message"]) == (401, "invalid bearer token")
    assert anonymous.get("/healthz").status_code == 200
    assert row_counts(pg_engine)["tasks"] == 0
    allowed = anonymous.post(
        "/api/tasks",
        json={"type": "demo.noop"},
        headers={"Authorization": "Bearer submit-test-token-0123"},
    )
    assert allowed.status_code == 201


@pytest.fixture(params=["postgresql", "sqlite"])
def any_api(
    request: pytest.FixtureRequest, api_factory: Callable[..., httpx.Client]
) -> tuple[httpx.Client, Engine]:
    """The API over HTTP on PostgreSQL, then on SQLite, with an engine on its database."""
    if request.param == "postgresql":
        return request.getfixturevalue("pg_api"), request.getfixturevalue("pg_engine")
    engine = request.getfixturevalue("sqlite_engine")
    settings = Settings(database_url=request.getfixturevalue("sqlite_url"), broker_url="memory://")
    return api_factory(settings), engine


def raw_post(api: httpx.Client, path: str, body: dict[str, Any], headers: str) -> httpx.Response:
    """A POST written byte by byte: httpx refuses to send a header value of blanks."""
    content = json.dumps(body).encode()
    request = (
        f"POST {path} HTTP/1.1\r\nHost: {api.base_url.host}\r\nConnection: close\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(content)}\r\n"
        f"{headers}\r\n\r\n"
    ).encode() + content
    with socket.create_connection((api.base_url.host, api.base_url.port), timeout=10) as sock:
        sock.sendall(request)
        answer = b"".join(iter(lambda: sock.recv(65536), b""))
    head, _, payload = answer.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return httpx.Response(status, content=payload.decode())


@pytest.mark.parametrize(
    "header",
    [
        pytest.param("Idempotency-Key:", id="empty"),
        pytest.param("Idempotency-Key: \t ", id="whitespace"),
    ],
)
def test_an_empty_idempotency_key_is_a_422_and_never_answers_with_another_task(
    any_api: tuple[httpx.Client, Engine], header: str
) -> None:
    api, engine = any_api
    for params in ({"client": "a"}, {"client": "b"}):
        body = {"type": "demo.echo", "params": params}
        response = raw_post(api, "/api/tasks", body, header)
        assert response.status_code == 422, response.text
        assert response.json()["error"] == "invalid_request"
        assert "idempotency-key" in response.json()["message"].lower()
        assert "must not be empty" in response.json()["message"]
    assert row_counts(engine)["tasks"] == 0


def test_an_idempotency_key_longer_than_200_characters_is_a_422(
    any_api: tuple[httpx.Client, Engine],
) -> None:
    api, engine = any_api
    body = {"type": "demo.noop"}
    longest = api.post("/api/tasks", json=body, headers={"Idempotency-Key": "k" * 200})
    assert longest.status_code == 201
    response = api.post("/api/tasks", json=body, headers={"Idempotency-Key": "k" * 201})
    assert response.status_code == 422
    assert response.json()["error"] == "invalid_request"
    assert "idempotency-key" in response.json()["message"].lower()
    assert "200" in response.json()["message"]
    assert row_counts(engine)["tasks"] == 1


@pytest.mark.parametrize("max_retries", [-1, 101, 10**6])
def test_max_retries_out_of_0_to_100_is_a_422_naming_the_field(
    pg_api: httpx.Client, pg_engine: Engine, max_retries: int
) -> None:
    body = {"type": "demo.noop", "maxRetries": max_retries}
    for response in (
        pg_api.post("/api/tasks", json=body),
        pg_api.post("/api/tasks/batch", json={"tasks": [body]}),
    ):
        assert response.status_code == 422
        assert response.json()["error"] == "invalid_request"
        assert "maxRetries" in response.json()["message"]
    assert row_counts(pg_engine)["tasks"] == 0
    assert pg_api.post("/api/tasks", json={**body, "maxRetries": 100}).status_code == 201
