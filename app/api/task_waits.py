"""Long polls of ``GET /api/tasks/{id}?wait=S``: waiting without holding a thread.

A waiting request is a coroutine on the event loop; it reads its task (a short read
in the thread pool) once it registered, then whenever it is woken or a slow safety
interval passed, until the task is terminal or its time is up. On PostgreSQL the
waiters of an API process share one LISTEN on ``jobplane_task_done``: an asyncio task
on a psycopg async connection, started at the first wait on the app's loop, opened
again with backoff when it fails (then every waiter reads again: what was notified
meanwhile is lost), closed at the app's shutdown. On SQLite waiters poll with backoff.
The timing constants are the library's waiters' (``jobplane.library.waiting``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress
from typing import Any, Protocol

import psycopg
from fastapi import FastAPI
from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool

from jobplane import store
from jobplane.db import connect_args
from jobplane.domain import TaskStatus
from jobplane.library.waiting import (
    POLL_FIRST,
    POLL_MAX,
    RECONNECT_FIRST,
    RECONNECT_MAX,
    SAFETY_INTERVAL,
)
from jobplane.models import TASK_DONE_CHANNEL
from jobplane.settings import Settings
from jobplane.store.rows import TaskRow
from jobplane.timeouts import PostgresTimeouts

logger = logging.getLogger(__name__)

#: Longest ``?wait=`` a request may ask for, in seconds.
MAX_WAIT = 60.0


class AsyncWatch(Protocol):
    async def pause(self, timeout: float) -> TaskRow | None:
        """Return when the task may have changed, or after at most ``timeout`` s: with
        the task's row when the watch was handed it, else None (the caller reads it)."""


class PollingWatch:
    """Pauses 20 ms, then twice as long each time, up to 1 s."""

    def __init__(self) -> None:
        self._delay = POLL_FIRST

    async def pause(self, timeout: float) -> TaskRow | None:
        await asyncio.sleep(max(0.0, min(self._delay, timeout)))
        self._delay = min(self._delay * 2, POLL_MAX)
        return None


class ListeningWatch:
    """Pauses until the listener hears the task finished, or ``SAFETY_INTERVAL`` s."""

    def __init__(self) -> None:
        self.event = asyncio.Event()
        self.paused = False  #: between two reads (what ``TaskDoneListener.paused`` counts)
        #: The row the listener read for this wake-up, if it did.
        self.row: TaskRow | None = None

    def wake(self, row: TaskRow | None) -> None:
        self.row = row
        self.event.set()

    async def pause(self, timeout: float) -> TaskRow | None:
        self.paused = True
        try:
            with suppress(TimeoutError):
                await asyncio.wait_for(self.event.wait(), max(0.0, min(timeout, SAFETY_INTERVAL)))
        finally:
            self.paused = False
        self.event.clear()  # before the next read: a later notification sets it again
        row, self.row = self.row, None
        return row


#: Reads the rows of the given task ids (those that exist), for the listener.
ReadMany = Callable[[list[str]], Awaitable[dict[str, TaskRow]]]


class TaskDoneListener:
    """The API process's one LISTEN, serving every waiting request (all on one loop).

    When a notification names tasks that requests wait for, the listener reads their
    rows in one statement and hands each waiter its own: a batch of completions that
    ends a hundred waits costs one read, not a hundred reads queued for the pool.
    """

    def __init__(self, conninfo: str, params: dict[str, Any], read_many: ReadMany) -> None:
        self._conninfo = conninfo
        self._params = params
        self._read_many = read_many
        self._watches: dict[str, set[ListeningWatch]] = {}
        self._task: asyncio.Task[None] | None = None
        self.conn: psycopg.AsyncConnection[tuple[object, ...]] | None = None

    def add(self, task_id: str, watch: ListeningWatch) -> None:
        self._watches.setdefault(task_id, set()).add(watch)
        loop = asyncio.get_running_loop()
        # One loop serves the app; a test client may run each call on a loop of its own.
        if self._task is None or self._task.done() or self._task.get_loop() is not loop:
            self._task = loop.create_task(self._run())

    def watched(self) -> set[str]:
        """The ids some waiter waits for now."""
        return set(self._watches)

    def paused(self) -> int:
        """How many waiters are paused now (between two reads of their task)."""
        return sum(watch.paused for group in self._watches.values() for watch in group)

    def discard(self, task_id: str, watch: ListeningWatch) -> None:
        watches = self._watches.get(task_id, set())
        watches.discard(watch)
        if not watches:
            self._watches.pop(task_id, None)

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        delay = RECONNECT_FIRST
        while True:
            try:
                self.conn = await psycopg.AsyncConnection.connect(
                    self._conninfo, autocommit=True, **self._params
                )
                await self.conn.execute(f"LISTEN {TASK_DONE_CHANNEL}")
                self._wake(None)  # whatever finished before the LISTEN was not heard
                delay = RECONNECT_FIRST
                async for notify in self.conn.notifies():
                    await self._wake_with_rows(notify.payload.split(","))
            except Exception:  # a background task survives every error (DESIGN)
                logger.warning("task-done listener failed; reconnecting", exc_info=True)
                self._wake(None)
            finally:
                await self._close()
            await asyncio.sleep(delay)
            delay = min(delay * 2, RECONNECT_MAX)

    async def _wake_with_rows(self, task_ids: list[str]) -> None:
        """Wake the waiters of ``task_ids``, each with its task's row, read for all at once
        (if that read fails, they read their own)."""
        waited = [task_id for task_id in task_ids if task_id in self._watches]
        if not waited:
            return
        try:
            rows = await self._read_many(waited)
        except Exception as error:
            logger.warning("could not read the finished tasks for their waiters: %s", error)
            rows = {}
        for task_id in waited:
            for watch in self._watches.get(task_id, ()):
                watch.wake(rows.get(task_id))

    def _wake(self, task_ids: list[str] | None) -> None:
        """Wake the waiters of ``task_ids`` (None: every waiter); each reads its task."""
        if task_ids is None:
            groups = list(self._watches.values())
        else:
            groups = [self._watches[task_id] for task_id in task_ids if task_id in self._watches]
        for group in groups:
            for watch in group:
                watch.wake(None)

    async def _close(self) -> None:
        conn, self.conn = self.conn, None
        if conn is not None:
            with suppress(psycopg.Error):
                await conn.close()


def listener_of(app: FastAPI) -> TaskDoneListener:
    """The app's listener, made at first use (its connection opens at the first wait)."""
    listener: TaskDoneListener | None = getattr(app.state, "task_done_listener", None)
    if listener is None:
        listener = app.state.task_done_listener = _new_listener(
            app.state.engine, app.state.settings
        )
    return listener


def _new_listener(engine: Engine, settings: Settings) -> TaskDoneListener:
    url = engine.url.set(drivername="postgresql")
    # The timeouts and keepalives of every connection the process opens: a LISTEN left
    # without them would wait on a vanished server for good.
    params = connect_args(str(url), PostgresTimeouts.from_settings(settings), {})

    async def read_many(task_ids: list[str]) -> dict[str, TaskRow]:
        return await run_in_threadpool(_read_tasks, engine, task_ids)

    return TaskDoneListener(url.render_as_string(hide_password=False), params, read_many)


def _read_tasks(engine: Engine, task_ids: list[str]) -> dict[str, TaskRow]:
    with engine.connect() as conn:
        return store.tasks.get_tasks(conn, task_ids)


async def close_listener(app: FastAPI) -> None:
    """Close the app's listener, if it has one; for the app's shutdown."""
    listener: TaskDoneListener | None = getattr(app.state, "task_done_listener", None)
    if listener is not None:
        await listener.aclose()


@asynccontextmanager
async def watching(app: FastAPI, task_id: str) -> AsyncIterator[AsyncWatch]:
    """A watch on ``task_id`` for the block: registered before the caller's first read."""
    if app.state.engine.dialect.name != "postgresql":
        yield PollingWatch()
        return
    listener = listener_of(app)
    watch = ListeningWatch()
    listener.add(task_id, watch)
    try:
        yield watch
    finally:
        listener.discard(task_id, watch)


async def until_finished(
    app: FastAPI, task_id: str, seconds: float, read: Callable[[], Awaitable[TaskRow]]
) -> TaskRow:
    """The task as ``read`` gives it, once terminal or after ``seconds`` (then as it is)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    row = await read()  # finished or unknown already: no need to listen
    if TaskStatus(row.status).is_terminal:
        return row
    async with watching(app, task_id) as watch:
        given: TaskRow | None = None
        while True:
            # Read after the watch started, so no finish goes unseen; a row the listener
            # read for this wake-up was read after the finish it was woken for.
            row = given or await read()
            remaining = deadline - loop.time()
            if TaskStatus(row.status).is_terminal or remaining <= 0:
                return row
            given = await watch.pause(remaining)
