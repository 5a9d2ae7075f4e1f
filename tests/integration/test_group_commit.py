"""Group commit on real PostgreSQL: batches form under load, and one bad item fails alone."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import pytest
from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from jobplane.db import make_async_engine
from jobplane.group_commit import AsyncGroupCommit, GroupCommit


@pytest.fixture
def notes(pg_engine: Engine) -> Iterator[Engine]:
    with pg_engine.begin() as conn:
        conn.execute(text("CREATE TABLE notes (id integer PRIMARY KEY)"))
    yield pg_engine


def count_notes(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text("SELECT count(*) FROM notes")).scalar_one())


def insert_notes(conn: Connection, ids: list[int]) -> list[int]:
    conn.execute(text("INSERT INTO notes (id) VALUES (:id)"), [{"id": i} for i in ids])
    return [-i for i in ids]


def test_items_queued_during_a_commit_share_the_next_transaction(notes: Engine) -> None:
    writing, first_batch_may_commit = threading.Event(), threading.Event()
    batch_sizes: list[int] = []

    def write(conn: Connection, ids: list[int]) -> list[int]:
        batch_sizes.append(len(ids))
        writing.set()
        first_batch_may_commit.wait(timeout=10)
        return insert_notes(conn, ids)

    writer = GroupCommit(notes, write, name="test-writer")
    futures = [writer.submit(0)]
    assert writing.wait(timeout=10)
    futures += [writer.submit(i) for i in range(1, 50)]  # while batch [0] is held open
    first_batch_may_commit.set()

    assert [future.result(timeout=10) for future in futures] == [-i for i in range(50)]
    assert batch_sizes == [1, 49]
    assert count_notes(notes) == 50
    writer.close()


def test_a_lone_item_is_written_by_its_caller_without_a_hand_off(notes: Engine) -> None:
    writing_threads: list[str] = []

    def write(conn: Connection, ids: list[int]) -> list[int]:
        writing_threads.append(threading.current_thread().name)
        return insert_notes(conn, ids)

    writer = GroupCommit(notes, write, name="test-writer")
    assert writer.run(1) == -1  # nothing else being written: the caller's own thread
    assert writing_threads == [threading.current_thread().name]
    assert writer.submit(2).result(timeout=10) == -2  # a submission goes to the writer
    assert writing_threads[-1] == "test-writer"
    writer.close()
    assert count_notes(notes) == 2


def test_a_bad_item_fails_only_its_own_caller(notes: Engine) -> None:
    hold = threading.Event()

    def write(conn: Connection, ids: list[int]) -> list[int]:
        hold.wait(timeout=10)
        return insert_notes(conn, ids)

    writer = GroupCommit(notes, write, name="test-writer")
    futures = [writer.submit(i) for i in (1, 2, 2, 3)]  # the second 2 breaks the key
    hold.set()

    assert futures[0].result(timeout=10) == -1
    assert futures[1].result(timeout=10) == -2
    with pytest.raises(IntegrityError):
        futures[2].result(timeout=10)
    assert futures[3].result(timeout=10) == -3
    assert count_notes(notes) == 3
    writer.close()


def test_a_closed_writer_commits_what_was_queued_and_refuses_more(notes: Engine) -> None:
    writer = GroupCommit(notes, insert_notes, name="test-writer")
    pending = [writer.submit(i) for i in range(10)]
    writer.close()

    assert all(future.done() for future in pending)
    assert count_notes(notes) == 10
    with pytest.raises(RuntimeError, match="closed"):
        writer.submit(11)
    with pytest.raises(RuntimeError, match="closed"):
        writer.run(12)


def test_a_writer_replaces_its_connection_when_the_database_drops_it(notes: Engine) -> None:
    backends: list[int] = []

    def write(conn: Connection, ids: list[int]) -> list[int]:
        backends.append(conn.execute(text("SELECT pg_backend_pid()")).scalar_one())
        return insert_notes(conn, ids)

    def drop_writer_connection() -> None:
        with notes.connect() as conn:
            conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": backends[-1]})

    retrying = GroupCommit(notes, write, name="test-writer", disconnect_retries=1)
    assert retrying.run(1) == -1
    assert retrying.run(2) == -2
    assert backends[0] == backends[1]  # the writer keeps its connection between batches
    drop_writer_connection()
    assert retrying.run(3) == -3  # on a fresh connection, unseen by the caller
    assert backends[-1] != backends[0]
    retrying.close()

    not_retrying = GroupCommit(notes, write, name="test-writer")
    assert not_retrying.run(4) == -4
    drop_writer_connection()
    with pytest.raises(DBAPIError):
        not_retrying.run(5)
    assert not_retrying.run(6) == -6
    not_retrying.close()
    assert count_notes(notes) == 5


def test_coroutines_share_transactions_and_a_bad_item_fails_alone(
    notes: Engine, pg_url: str
) -> None:
    async def scenario() -> list[int | str]:
        async def write(conn: AsyncConnection, ids: list[int]) -> list[int]:
            return await conn.run_sync(insert_notes, ids)

        writer: AsyncGroupCommit[int, int] = AsyncGroupCommit(
            make_async_engine(pg_url), write, name="test-writer"
        )
        # Submitted in one go they make one batch; the repeated key fails it, and the
        # batch is written again item by item.
        outcomes = await asyncio.gather(
            *(writer.run_async(i) for i in (1, 2, 3, 3, 4)), return_exceptions=True
        )
        await writer.aclose()
        return [o if isinstance(o, int) else type(o).__name__ for o in outcomes]

    assert asyncio.run(scenario()) == [-1, -2, -3, "IntegrityError", -4]
    assert count_notes(notes) == 4
