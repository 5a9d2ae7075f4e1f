"""Liveness and readiness.

``/readyz`` takes no token, so it says only which check failed (``"database":
"unavailable"``); what failed and why (the driver's message, with host and user) goes
to the log.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable
from urllib.parse import urlsplit

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import text

from jobplane.api.errors import RETRY_AFTER
from jobplane.api.schemas import Health
from jobplane.timeouts import RedisTimeouts

logger = logging.getLogger(__name__)

router = APIRouter(tags=["health"])

CHECK_TIMEOUT = 2.0  #: seconds each readiness check may take


@router.get("/healthz", response_model=Health)
def healthz() -> Health:
    """The process is up."""
    return Health(status="ok")


@router.get("/readyz", response_model=Health, responses={503: {"model": Health}})
def readyz(request: Request) -> JSONResponse:
    """The database and the broker are reachable."""
    checks = {
        "database": _check("database", lambda: _ping_database(request)),
        "broker": _check("broker", lambda: ping_broker(request.app.state.settings.broker_url)),
    }
    ready = all(result == "ok" for result in checks.values())
    body = Health(status="ok" if ready else "unavailable", checks=checks)
    return JSONResponse(
        body.model_dump(by_alias=True),
        status_code=200 if ready else 503,
        headers=None if ready else {"Retry-After": RETRY_AFTER},
    )


def _check(name: str, probe: Callable[[], None]) -> str:
    """``"ok"``, or ``"unavailable"`` with the reason logged."""
    try:
        probe()
    except Exception as error:
        logger.warning(
            "readiness: the %s is unavailable: %s: %s", name, type(error).__name__, error
        )
        return "unavailable"
    return "ok"


def _ping_database(request: Request) -> None:
    with request.app.state.engine.connect() as conn:
        conn.execute(text("SELECT 1"))


def ping_broker(url: str) -> None:
    """Raise unless the broker at ``url`` accepts a connection (memory:// always does)."""
    parts = urlsplit(url)
    if parts.scheme == "memory":
        return
    if parts.scheme.startswith("redis"):
        import redis

        options = RedisTimeouts().connection_options()
        options.update(socket_connect_timeout=CHECK_TIMEOUT, socket_timeout=CHECK_TIMEOUT)
        client = redis.Redis.from_url(url, **options)
        try:
            client.ping()
        finally:
            client.close()
        return
    port = parts.port or (5671 if parts.scheme == "amqps" else 5672)
    with socket.create_connection((parts.hostname or "localhost", port), timeout=CHECK_TIMEOUT):
        return
