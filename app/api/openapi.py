"""The OpenAPI document, completed with what every ``/api/`` route shares.

FastAPI describes each route from its own signature; what the app adds around the
routes is added here once: the bearer token (so ``/docs`` has an "Authorize" button),
the answers of the front door and the limits (400, 401, 403, 413, 503) every ``/api/``
route may give, and the shape of a 422, which the error handler turns into a
``Problem`` rather than FastAPI's default body. Then the links between operations
(``openapi_links``), the submissions the service accepts (``openapi_submissions``) and
the workflows (``openapi_workflows``).
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from jobplane import registry
from jobplane.api.openapi_links import add_links
from jobplane.api.openapi_submissions import describe_submissions
from jobplane.api.openapi_workflows import describe_workflows
from jobplane.api.stats import describe_job

PROBLEM = {"application/json": {"schema": {"$ref": "#/components/schemas/Problem"}}}

#: Answers shared by every /api/ route; (status, description, for write methods only).
SHARED: list[tuple[str, str, bool]] = [
    ("400", "the Host header is not one the API answers (JOBPLANE_ALLOWED_HOSTS)", False),
    ("401", "missing or invalid bearer token", False),
    (
        "403",
        "a read-only token, or a browser on another site, on a route that changes something",
        True,
    ),
    (
        "503",
        "the database is unreachable, or the process is at a limit; retry after Retry-After",
        False,
    ),
]


def install(app: FastAPI) -> None:
    """Serve the completed document at ``/openapi.json`` (built once, then cached)."""

    def build() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = get_openapi(
                title=app.title,
                version=app.version,
                summary=app.summary,
                description=app.description,
                routes=app.routes,
            )
            document = complete(document)
            add_links(document)
            settings = app.state.settings
            jobs = [describe_job(spec, settings) for spec in registry.all_jobs()]
            describe_submissions(document, jobs)
            describe_workflows(document, jobs)
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = build  # type: ignore[method-assign]


def complete(document: dict[str, Any]) -> dict[str, Any]:
    """``document`` with the shared answers, the token and Problem as every 422's body."""
    components = document.setdefault("components", {})
    components.setdefault("securitySchemes", {})["bearer"] = {
        "type": "http",
        "scheme": "bearer",
        "description": "JOBPLANE_API_TOKEN, or JOBPLANE_READ_ONLY_TOKEN for GET routes",
    }
    for path, operations in document.get("paths", {}).items():
        for method, operation in operations.items():
            responses = operation.setdefault("responses", {})
            if "422" in responses:
                responses["422"] = {
                    "description": "the request does not validate: which field, and why",
                    "content": PROBLEM,
                }
            if "requestBody" in operation:
                responses.setdefault(
                    "400", {"description": "the body cannot be read", "content": PROBLEM}
                )
                responses.setdefault(
                    "413",
                    {"description": "the body is larger than the route takes", "content": PROBLEM},
                )
            if path.startswith("/api/"):
                operation["security"] = [{"bearer": []}]
                for status, description, writes_only in SHARED:
                    if writes_only and method == "get":
                        continue
                    responses.setdefault(status, {"description": description, "content": PROBLEM})
    schemas = components.get("schemas", {})
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)
    return document
