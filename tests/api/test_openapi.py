"""The OpenAPI document is complete and true: schemathesis fuzzes every route with it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode, checks

from jobplane.api.main import create_app
from jobplane.db import make_engine
from jobplane.settings import Settings

TOKEN = "openapi-test-token-0123"
#: A stream that lasts seconds; test_events.py reads it with a bounded client instead.
STREAMING = "/api/admin/events"
#: Enough to reach every parameter's edge cases while the whole file stays under ~60 s.
MAX_EXAMPLES = 25


CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_schema_conformance,
]


@pytest.mark.parametrize(
    ("mode", "examples"),
    [(GenerationMode.POSITIVE, MAX_EXAMPLES), (GenerationMode.NEGATIVE, MAX_EXAMPLES // 2)],
)
def test_every_route_answers_as_its_schema_says(
    pg_url: str, mode: GenerationMode, examples: int
) -> None:
    # Given the API with a token, and its own OpenAPI document
    engine = make_engine(pg_url)
    app = create_app(Settings(database_url=pg_url, api_token=TOKEN), engine=engine)
    schema = schemathesis.openapi.from_asgi("/openapi.json", app).exclude(path=STREAMING)
    failures: dict[str, str] = {}
    try:
        for result in schema.get_all_operations():
            operation = result.ok()
            # When schemathesis calls it with generated requests and the valid token
            try:
                _fuzz(operation, mode, examples)
            except Unsatisfiable:
                assert mode is GenerationMode.NEGATIVE, operation.label  # nothing to get wrong
            except Exception as error:  # every operation is tried; all failures reported
                failures[operation.label] = f"{type(error).__name__}: {error}"
    finally:
        engine.dispose()
    # Then no answer is a 5xx, or has an undocumented status, content type or body
    assert not failures, "\n\n".join(f"{label}:\n{text}" for label, text in failures.items())


def _fuzz(operation: Any, mode: GenerationMode, examples: int) -> None:
    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
        phases=[Phase.explicit, Phase.generate],  # no shrinking: report the first failure
    )
    def run(case: Any) -> None:
        case.call_and_validate(headers={"Authorization": f"Bearer {TOKEN}"}, checks=CHECKS)

    run()


def admin_routes(spec: dict[str, Any]) -> list[tuple[str, str]]:
    return [
        (method.upper(), path)
        for path, operations in spec["paths"].items()
        for method in operations
        if path.startswith("/api/")
    ]


def test_without_a_token_every_api_route_answers_401(
    api_factory: Callable[..., httpx.Client], pg_settings: Settings
) -> None:
    # Given an API with a token, and the routes its own document lists
    client = api_factory(pg_settings.model_copy(update={"api_token": TOKEN}))
    routes = admin_routes(client.get("/openapi.json").json())
    assert ("GET", "/api/admin/stats") in routes
    assert ("GET", STREAMING) in routes
    assert len(routes) >= 10
    # When each is called without a token, or with a wrong one, then: 401 and a message
    for method, path in routes:
        url = path.replace("{task_id}", "some-id").replace("{name}", "some-name")
        for headers in ({}, {"Authorization": "Bearer wrong"}):
            answer = client.request(method, url, headers=headers)
            assert answer.status_code == 401, (method, path, answer.text)
            assert answer.json()["error"] == "unauthorized"
            assert answer.headers["WWW-Authenticate"] == "Bearer"


def test_the_document_describes_the_token_and_the_error_bodies(
    api_factory: Callable[..., httpx.Client], pg_settings: Settings
) -> None:
    spec = api_factory(pg_settings).get("/openapi.json").json()
    assert spec["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    assert "HTTPValidationError" not in spec["components"]["schemas"]
    submit = spec["paths"]["/api/tasks"]["post"]
    assert submit["security"] == [{"bearer": []}]
    problem = {"$ref": "#/components/schemas/Problem"}
    for status in ("401", "403", "422", "503"):
        assert submit["responses"][status]["content"]["application/json"]["schema"] == problem
    assert "403" not in spec["paths"]["/api/admin/stats"]["get"]["responses"]
    assert "security" not in spec["paths"]["/healthz"]["get"]
