"""The API's front door: what a request must pass before the app reads a byte of its body.

A pure ASGI middleware in front of the app, which buffers nothing: it reads the request
line and headers, and answers at once (JSON, as every error) when one of these fails,
in this order:

1. ``Host`` is one the API answers (``JOBPLANE_ALLOWED_HOSTS``): else 400. The probes
   (``/healthz``, ``/readyz``, ``/metrics``) answer any Host, because orchestrators and
   scrapers address a process by its IP; they take no token and change nothing.
2. A write (any method but GET, HEAD, OPTIONS) that a browser says comes from another
   origin (``Origin``, ``Sec-Fetch-Site``): 403.
3. On ``/api/`` routes, the bearer token: 401, or 403 for a read-only token's write.
4. The body's size (``jobplane.api.limits``): a ``Content-Length`` over the route's limit
   is 413, unread. A body without one (chunked) is counted as the app reads it, and the
   read that crosses the limit raises a 413 instead of handing the bytes over.

A refused request that announced a body is answered with ``Connection: close``, so the
server does not read the rest of it either.
"""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from jobplane.api import hosts, limits
from jobplane.api.auth import READ_METHODS, TOKEN_CHECKED, Forbidden, Unauthorized, check_token
from jobplane.api.errors import problem, problem_for
from jobplane.settings import Settings

#: Routes that answer any Host: health probes and the metrics scrape.
PROBES = frozenset({"/healthz", "/readyz", "/metrics"})


class BodyTooLarge(HTTPException):
    """A body that grew past its limit while it was read (413; the app's handler of
    HTTP errors answers it in the JSON shape)."""

    def __init__(self, limit: int, method: str, path: str) -> None:
        super().__init__(413, too_large(limit, method, path), headers={"Connection": "close"})


class FrontDoor:
    """Checks Host, origin, token and body size of every HTTP request for ``app``."""

    def __init__(self, app: ASGIApp, *, settings: Settings) -> None:
        self.app = app
        self.settings = settings
        self.hosts = hosts.AllowedHosts(settings.allowed_host_names)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        method: str = scope["method"]
        path = _route_path(scope)
        limit = limits.body_limit(method, path)
        refusal = self._refusal(headers, method, path, limit)
        if refusal is not None:
            if _announces_body(headers):
                refusal.headers["Connection"] = "close"
            await refusal(scope, receive, send)
            return
        scope[TOKEN_CHECKED] = True
        await self.app(scope, _counted(receive, limit, method, path), send)

    def _refusal(self, headers: Headers, method: str, path: str, limit: int) -> Response | None:
        """The answer that refuses this request, or None to let it in."""
        host = headers.get("host", "")
        if path not in PROBES and not self.hosts.allows(host):
            return problem(
                400,
                "host_not_allowed",
                f"this API does not answer to the name {host!r} (JOBPLANE_ALLOWED_HOSTS)",
            )
        if method not in READ_METHODS and hosts.cross_site(headers):
            return problem(
                403,
                "cross_site_request",
                "a browser sent this request from another site; write requests are"
                " accepted only from the API's own pages, or from clients that are not"
                " browsers",
            )
        if path.startswith("/api/"):
            try:
                check_token(self.settings, headers.get("authorization", ""), method, path)
            except (Unauthorized, Forbidden) as error:
                return problem_for(error)
        length = _declared_length(headers)
        if length is not None and length > limit:
            return problem(413, "request_too_large", too_large(limit, method, path))
        return None


def too_large(limit: int, method: str, path: str) -> str:
    return (
        f"the request body is larger than {limits.in_words(limit)}, the most"
        f" {method} {path} accepts"
    )


def _counted(receive: Receive, limit: int, method: str, path: str) -> Receive:
    """``receive``, raising ``BodyTooLarge`` instead of the chunk that crosses ``limit``."""
    received = 0

    async def counted_receive() -> Message:
        nonlocal received
        message = await receive()
        if message["type"] == "http.request":
            received += len(message.get("body", b""))
            if received > limit:
                raise BodyTooLarge(limit, method, path)
        return message

    return counted_receive


def _route_path(scope: Scope) -> str:
    """The path inside the app (without the prefix it is mounted at, if any)."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    return path[len(root) :] if root and path.startswith(root) else path


def _declared_length(headers: Headers) -> int | None:
    try:
        return int(headers["content-length"])
    except (KeyError, ValueError):  # none (chunked, or no body); the server refuses junk
        return None


def _announces_body(headers: Headers) -> bool:
    return "transfer-encoding" in headers or (_declared_length(headers) or 0) > 0
