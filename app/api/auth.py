"""Bearer-token access control for every ``/api/`` route.

Two tokens from the settings: ``api_token`` may do everything; ``read_only_token``
(optional) may only read (GET, HEAD). Missing or unknown token: 401. A read-only token
on a route that changes something: 403.
"""

from __future__ import annotations

import hmac

from fastapi import Request

from jobplane.domain import JobplaneError

#: Methods a read-only token may use.
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class Unauthorized(JobplaneError):
    """A valid bearer token is required."""


class Forbidden(JobplaneError):
    """This token may not do that."""


async def require_token(request: Request) -> None:
    """Accept the request if no token is configured or it carries a token allowed to do it.

    ``async`` only so that FastAPI runs it on the event loop, not in a thread: it does
    no I/O.
    """
    settings = request.app.state.settings
    expected: str | None = settings.api_token
    if expected is None:
        return
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise Unauthorized(
            "missing bearer token: send 'Authorization: Bearer <JOBPLANE_API_TOKEN>'"
        )
    given = token.strip().encode()
    # Constant time, so response timing does not reveal how much of a guess was right.
    if hmac.compare_digest(given, expected.encode()):
        return
    read_only: str | None = settings.read_only_token
    if read_only is None or not hmac.compare_digest(given, read_only.encode()):
        raise Unauthorized("invalid bearer token")
    if request.method not in READ_METHODS:
        raise Forbidden(
            "this token is read-only: a read-write token (JOBPLANE_API_TOKEN) is needed"
            f" to {request.method} {request.url.path}"
        )
