"""SQLite's one write lock: writes take it when they begin, reads never take it, so
the dashboard and the API's reads go on while a writer holds it."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import httpx
import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from jobplane import service, store
from jobplane.models import Task, utcnow
from jobplane.settings import Settings


def write_lock_is_free(sqlite_url: str) -> bool:
    """Whether another connection could take the write lock right now (without waiting)."""
    other = sqlite3.connect(sqlite_url.removeprefix("sqlite:///"), timeout=0, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
    except sqlite3.OperationalError as error:
        assert "locked" in str(error)
        return False
    finally:
        other.close()  # rolls back what it began
    return True


def test_a_write_transaction_holds_the_lock_from_its_begin_and_a_read_never_takes_it(
    sqlite_engine: Engine, sqlite_url: str
) -> None:
    # A transaction begun explicitly, and a Session's, hold the lock before any statement
    with sqlite_engine.begin():
        assert not write_lock_is_free(sqlite_url)
    with Session(sqlite_engine) as session, session.begin():
        session.execute(select(Task.id)).all()
        assert not write_lock_is_free(sqlite_url)
    # A connection whose statement began the transaction only reads, lock-free
    with sqlite_engine.connect() as conn:
        conn.execute(select(Task.id)).all()
        assert conn.in_transaction()
        assert write_lock_is_free(sqlite_url)
        # and an explicit begin() on a fresh connection takes the lock again
    with sqlite_engine.connect() as conn, conn.begin():
        assert not write_lock_is_free(sqlite_url)
    assert write_lock_is_free(sqlite_url)


@contextmanager
def write_lock_held(engine: Engine) -> Iterator[str]:
    """A writer in the middle of its transaction: a task inserted, not yet committed."""
    task = service.build_task(service.Submission(type="demo.noop"), Settings(), utcnow())
    with engine.begin() as conn:
        store.tasks.insert_tasks(conn, [task])
        yield task.id
        conn.rollback()


@pytest.mark.parametrize(
    "path",
    [
        "/api/admin/tasks",
        "/api/admin/tasks?status=pending&search=",
        "/api/tasks/{id}",
        "/api/admin/tasks/{id}",
        "/api/admin/tasks/{id}/logs",
        "/api/admin/stats",
        "/api/admin/schedules",
    ],
)
def test_the_apis_reads_answer_while_a_writer_holds_the_lock(
    api_factory: Callable[..., httpx.Client], sqlite_engine: Engine, sqlite_url: str, path: str
) -> None:
    # Given a task, and a writer that holds the write lock meanwhile
    api = api_factory(Settings(database_url=sqlite_url))
    api.timeout = httpx.Timeout(5.0)  # a read waiting for the lock would wait 30 s
    task_id = api.post("/api/tasks", json={"type": "demo.noop"}).json()["taskId"]
    with write_lock_held(sqlite_engine) as uncommitted:
        # When the API reads
        response = api.get(path.format(id=task_id))

    # Then it answers at once, from what was committed
    assert response.status_code == 200, response.text
    assert uncommitted not in response.text
