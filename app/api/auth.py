"""Bearer-token access control for every ``/api/`` route.

Two tokens from the settings: ``api_token`` may do everything; ``read_only_token``
(optional) may only read (GET, HEAD, OPTIONS). Missing or unknown token: 401. A
read-only token on a route that changes something: 403.

The front door (``jobplane.api.front_door``) runs ``check_token`` on every request
before its body is read, and marks the request as checked; the ``require_token``
dependency of the routers then only looks at that mark, so a token is compared once.
"""

from __future__ import annotations

import hmac

from fastapi import Request

from jobplane.domain import JobplaneError
from jobplane.settings import Settings

#: Methods a read-only token may use.
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
#: The ASGI scope key the front door sets once a request's token is checked.
TOKEN_CHECKED = "jobplane.token_checked"


class Unauthorized(JobplaneError):
    """A valid bearer token is required."""


class Forbidden(JobplaneError):
    """This token may not do that."""


def check_token(settings: Settings, authorization: str, method: str, path: str) -> None:
    """Return if no token is configured, or ``authorization`` carries one allowed to
    ``method`` (on ``path``, for the message); else raise ``Unauthorized`` or ``Forbidden``."""
    expected = settings.api_token
    if expected is None:
        return
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise Unauthorized(
            "missing bearer token: send 'Authorization: Bearer <JOBPLANE_API_TOKEN>'"
        )
    given = token.strip().encode()
    # Constant time, so response timing does not reveal how much of a guess was right.
    if hmac.compare_digest(given, expected.encode()):
        return
    read_only = settings.read_only_token
    if read_only is None or not hmac.compare_digest(given, read_only.encode()):
        raise Unauthorized("invalid bearer token")
    if method not in READ_METHODS:
        raise Forbidden(
            "this token is read-only: a read-write token (JOBPLANE_API_TOKEN) is needed"
            f" to {method} {path}"
        )


async def require_token(request: Request) -> None:
    """The token check of a request the front door has not checked (an app without it).

    ``async`` only so that FastAPI runs it on the event loop, not in a thread: it does
    no I/O.
    """
    if request.scope.get(TOKEN_CHECKED):
        return
    check_token(
        request.app.state.settings,
        request.headers.get("authorization", ""),
        request.method,
        request.url.path,
    )
