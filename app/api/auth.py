"""Bearer-token access control for every ``/api/`` route."""

from __future__ import annotations

import hmac

from fastapi import Request

from app.domain import JobplaneError


class Unauthorized(JobplaneError):
    """A valid bearer token is required."""


def require_token(request: Request) -> None:
    """Accept the request if no token is configured or it carries the right one."""
    expected: str | None = request.app.state.settings.api_token
    if expected is None:
        return
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise Unauthorized(
            "missing bearer token: send 'Authorization: Bearer <JOBPLANE_API_TOKEN>'"
        )
    # Constant time, so response timing does not reveal how much of a guess was right.
    if not hmac.compare_digest(token.strip().encode(), expected.encode()):
        raise Unauthorized("invalid bearer token")
