"""Security headers on every answer: what a browser may run, frame, sniff or tell.

Every answer, JSON or HTML, gets ``X-Content-Type-Options: nosniff``,
``Referrer-Policy: no-referrer``, ``X-Frame-Options: DENY`` and, unless its route set
its own (the API docs do), ``CONTENT_SECURITY_POLICY``: the dashboard's, which runs only
its own files (ES modules from ``/static``), no inline script or style, and may not be
framed.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send


def policy(**directives: str) -> str:
    """A Content-Security-Policy from ``script_src="'self'"``-style keyword arguments."""
    return "; ".join(f"{name.replace('_', '-')} {value}" for name, value in directives.items())


#: What every page may do at least: nothing from elsewhere, no plugins, no <base>
#: rewriting, no framing.
BASE = {
    "default_src": "'self'",
    "object_src": "'none'",
    "base_uri": "'none'",
    "form_action": "'self'",
    "frame_ancestors": "'none'",
}

#: The dashboard's: its own scripts, styles and API calls; ``data:`` for the favicon.
CONTENT_SECURITY_POLICY = policy(
    **BASE,
    script_src="'self'",
    style_src="'self'",
    img_src="'self' data:",
    connect_src="'self'",
)

HEADERS = {
    "content-security-policy": CONTENT_SECURITY_POLICY,
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
}
_RAW_HEADERS = [(name.encode(), value.encode()) for name, value in HEADERS.items()]


class SecurityHeaders:
    """Adds ``HEADERS`` to every HTTP answer of ``app`` that does not set them itself."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", ()))
                present = {name.lower() for name, _ in headers}
                headers += [header for header in _RAW_HEADERS if header[0] not in present]
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)
