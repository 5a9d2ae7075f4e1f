"""What the API accepts as params reads back as it was sent, on PostgreSQL and SQLite:
whatever cannot (deep nesting, NaN, ±Infinity, NUL, lone surrogates) is a 422 naming
where it is, and nothing is written."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine

from tests.conftest import row_counts


@pytest.fixture
def api_and_engine(
    api_on: Callable[[str], tuple[httpx.Client, Engine]], any_url: str
) -> tuple[httpx.Client, Engine]:
    return api_on(any_url)


def nested(levels: int, leaf: Any = 1) -> Any:
    """``{"a": {"a": … leaf}}``: ``levels`` objects deep."""
    value = leaf
    for _ in range(levels):
        value = {"a": value}
    return value


def lists(levels: int) -> str:
    """JSON text of ``levels`` empty lists, one inside the other."""
    return "[" * levels + "]" * levels


def post_text(api: httpx.Client, path: str, text: str) -> httpx.Response:
    # JSON written by hand: \u escapes and NaN literals that httpx's json= cannot send.
    return api.post(path, content=text, headers={"Content-Type": "application/json"})


#: Params as JSON text, where the refusal must say the problem is, and what it must say.
UNSTORABLE_PARAMS = [
    (json.dumps({"a": nested(299)}), "params" + ".a" * 32, "nested deeper than 32"),
    (
        json.dumps({"a": {"b": [0, 1, 2, nested(30)]}}),
        "params.a.b[3]" + ".a" * 29,
        "nested deeper than 32 levels",
    ),
    ('{"x": [1, NaN]}', "params.x[1]", "NaN is not a JSON number"),
    ('{"x": Infinity}', "params.x", "Infinity is not a JSON number"),
    ('{"x": -1e400}', "params.x", "-Infinity is not a JSON number"),
    ('{"x": "a\\u0000b"}', "params.x", "NUL character"),
    ('{"x": {"k\\u0000": 1}}', "params.x", "the key"),
    ('{"x": "\\udc80"}', "params.x", "lone surrogate"),
    ('{"\\ud800 b": 1}', "params", "lone surrogate"),
]


def test_params_that_cannot_read_back_are_a_422_naming_where_and_nothing_is_written(
    api_and_engine: tuple[httpx.Client, Engine],
) -> None:
    api, engine = api_and_engine
    for params, where, why in UNSTORABLE_PARAMS:
        # When a client submits them, alone or in a batch
        alone = post_text(api, "/api/tasks", f'{{"type": "demo.echo", "params": {params}}}')
        batch = post_text(
            api,
            "/api/tasks/batch",
            f'{{"tasks": [{{"type": "demo.noop"}}, {{"type": "demo.echo", "params": {params}}}]}}',
        )

        # Then each is refused, saying where and why
        assert alone.status_code == 422, f"{params}: {alone.text}"
        assert alone.json()["error"] == "invalid_params"
        assert alone.json()["message"].startswith(f"{where}: "), alone.json()["message"]
        assert why in alone.json()["message"]
        assert batch.status_code == 422, f"{params}: {batch.text}"
        assert batch.json()["message"].startswith(f"tasks[1]: {where}: ")
    # and nothing is stored
    assert row_counts(engine) == {"tasks": 0, "outbox": 0, "task_logs": 0}


def test_params_32_levels_deep_with_every_kind_of_value_read_back_equal(
    api_and_engine: tuple[httpx.Client, Engine],
) -> None:
    api, _engine = api_and_engine
    leaf = {"text": "é\t\u2028😀", "n": -0.5, "big": 2**63, "ok": True, "none": None, "l": []}
    params = {"a": nested(29, leaf)}  # params, 29 objects, leaf, its list: 32 levels

    created = api.post("/api/tasks", json={"type": "demo.echo", "params": params})

    assert created.status_code == 201, created.text
    assert created.json()["params"] == params
    task_id = created.json()["taskId"]
    assert api.get(f"/api/admin/tasks/{task_id}").json()["params"] == params
    assert api.get(f"/api/tasks/{task_id}").json()["params"] == params


#: Bodies that nest thousands deep: in params, whole, in another field, in params again.
DEEP_BODIES = [
    f'{{"type": "demo.echo", "params": {lists(10_000)}}}',
    lists(10_000),
    f'{{"type": "demo.echo", "x": {lists(900)}}}',
    f'{{"type": "demo.echo", "params": {{"a": {lists(900)}}}}}',
]


def test_a_body_nested_thousands_deep_is_a_422_and_writes_nothing(
    api_and_engine: tuple[httpx.Client, Engine],
) -> None:
    api, engine = api_and_engine
    for body in DEEP_BODIES:
        for path in ("/api/tasks", "/api/tasks/batch"):
            response = post_text(api, path, body)
            assert response.status_code == 422, f"{body[:40]}: {response.text}"
            assert response.json()["error"] in ("invalid_request", "invalid_params")
            assert response.json()["message"]
    assert row_counts(engine) == {"tasks": 0, "outbox": 0, "task_logs": 0}
    assert api.get("/healthz").status_code == 200
