"""``jobplane.enqueue``: a task row and its outbox row added to the caller's own
transaction (a SQLAlchemy Session or Connection), committed with it or not at all."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection
from sqlalchemy.orm import Session


def enqueue(
    db: Session | Connection,
    type: str,
    params: dict[str, Any] | None = None,
    *,
    queue: str | None = None,
    priority: int | None = None,
    delay: float | None = None,
    max_retries: int | None = None,
    timeout: int | None = None,
    idempotency_key: str | None = None,
) -> str:
    """Add a task to ``db``'s open transaction; its id. Commits nothing."""
    raise NotImplementedError
