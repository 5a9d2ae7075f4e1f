"""A live stream of task changes and stats for the dashboard (Server-Sent Events).

Each stream looks at the database once a second: it sends ``stats`` every time and
``tasks`` with the tasks whose visible state changed since its previous look: the
running ones (their progress moves) and those whose status changed, read through
``updated_at``'s index (``store.stats.changed_tasks``); each stream remembers what it
sent and sends only differences. A look costs the same at ten million tasks as at
ten. A stream ends after ``maxSeconds``; clients reconnect.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import StreamingResponse
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError
from starlette.concurrency import run_in_threadpool

from jobplane import store
from jobplane.api.auth import require_token
from jobplane.api.schemas import Problem, TaskSummary
from jobplane.api.slots import HeldStream, Slots
from jobplane.api.stats import Stats, collect_stats
from jobplane.api.tasks import EngineDep
from jobplane.models import utcnow

logger = logging.getLogger(__name__)

router = APIRouter(
    prefix="/api/admin",
    tags=["admin"],
    dependencies=[Depends(require_token)],
    responses={401: {"model": Problem}},
)

POLL_INTERVAL = 1.0  #: seconds between two looks at the database
#: A row whose timestamp is up to this many seconds older than the previous look still
#: counts as new: a transaction commits a moment after it took its timestamps.
SLACK = 5.0
MAX_TASKS = 500  #: most tasks one look reads
DEFAULT_STREAM_SECONDS = (
    30.0  #: a stream's default life; short, so a stopping server never waits long
)
#: The longest life a client may ask for, in seconds. Every stream holds one of the
#: process's ``JOBPLANE_MAX_EVENT_STREAMS`` slots: ending each within minutes gives
#: them back even to a client that never disconnects, at the cost of one reconnection
#: (the dashboard reconnects at once).
MAX_STREAM_SECONDS = 300.0

UNAVAILABLE = "the database is unreachable; the stream ends, reconnect shortly"

EVENTS_DESCRIPTION = """\
`text/event-stream`. Events:

- `stats`: the same JSON as `GET /api/admin/stats`, every second;
- `tasks`: `{"tasks": [...]}`, list entries as in `GET /api/admin/tasks`, for the tasks
  whose state changed since the previous look (the first look sends the running and
  recently changed ones);
- `error`: `{"error", "message"}` when the database cannot be read; the stream then ends.

Send the token in the `Authorization` header (read the stream with `fetch`, not
`EventSource`, which cannot send headers). The stream ends after `maxSeconds` (at most
300). An API process serves at most `JOBPLANE_MAX_EVENT_STREAMS` streams at once; one
more is answered 503 `too_many_streams`, with `Retry-After`.
"""


def _event_schema(name: str, data: dict[str, Any]) -> dict[str, Any]:
    """The schema of one Server-Sent Event ``name`` whose data is JSON described by ``data``."""
    return {
        "type": "object",
        "required": ["event", "data"],
        "properties": {
            "event": {"const": name},
            "data": {
                "type": "string",
                "contentMediaType": "application/json",
                "contentSchema": data,
            },
        },
    }


def _component(model: type[Any]) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{model.__name__}"}


#: Each event of the stream, as OpenAPI 3.2's ``itemSchema`` (which FastAPI's own SSE
#: routes also write) describes the items of a ``text/event-stream``.
EVENT_SCHEMA = {
    "oneOf": [
        _event_schema("stats", _component(Stats)),
        _event_schema(
            "tasks",
            {
                "type": "object",
                "required": ["tasks"],
                "properties": {"tasks": {"type": "array", "items": _component(TaskSummary)}},
            },
        ),
        _event_schema("error", _component(Problem)),
    ]
}


class TaskWatcher:
    """What one stream sent, to send only what changed since."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.sent: dict[str, dict[str, Any]] = {}
        self.last_look = utcnow() - timedelta(seconds=SLACK)

    def look(self) -> str:
        """The events of one look at the database, encoded for the stream."""
        now = utcnow()
        with self.engine.connect() as conn:
            stats = collect_stats(conn, now)
            tasks = store.stats.changed_tasks(
                conn, since=self.last_look - timedelta(seconds=SLACK), limit=MAX_TASKS
            )
        self.last_look = now
        current = {
            task.id: TaskSummary.from_task(task).model_dump(mode="json", by_alias=True)
            for task in tasks
        }
        changed = [task for task_id, task in current.items() if self.sent.get(task_id) != task]
        self.sent = current
        events = [encode("stats", stats.model_dump(mode="json", by_alias=True))]
        if changed:
            events.append(encode("tasks", {"tasks": changed}))
        return "".join(events)


def encode(event: str, data: Any) -> str:
    """One Server-Sent Event (its JSON holds no newline)."""
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


async def _stream(watcher: TaskWatcher, seconds: float) -> AsyncIterator[str]:
    yield "retry: 1000\n\n"  # EventSource-style clients reconnect after 1 s
    deadline = time.monotonic() + seconds
    while True:
        try:
            yield await run_in_threadpool(watcher.look)
        except SQLAlchemyError as error:
            logger.error("events stream: database unavailable: %s", error)
            yield encode("error", {"error": "database_unavailable", "message": UNAVAILABLE})
            return
        if time.monotonic() + POLL_INTERVAL > deadline:
            return
        await anyio.sleep(POLL_INTERVAL)


@router.get(
    "/events",
    response_class=StreamingResponse,
    responses={
        200: {
            "description": EVENTS_DESCRIPTION,
            "content": {"text/event-stream": {"itemSchema": EVENT_SCHEMA}},
        }
    },
)
def events(
    request: Request,
    engine: EngineDep,
    max_seconds: Annotated[
        float,
        Query(
            alias="maxSeconds",
            gt=0,
            le=MAX_STREAM_SECONDS,
            description="when the stream ends, in seconds",
        ),
    ] = DEFAULT_STREAM_SECONDS,
) -> StreamingResponse:
    """Live task changes and stats, as Server-Sent Events."""
    slots: Slots = request.app.state.event_streams
    slots.take()  # none free: 503 with Retry-After
    return HeldStream(
        slots,
        _stream(TaskWatcher(engine), max_seconds),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )
