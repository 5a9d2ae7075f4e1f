"""The task counts the admin reads add up always equal a count of the tasks themselves.

Every status-changing statement is checked against them in test_transitions.py; here:
inserts in bulk, deletes by retention, the fold, TRUNCATE, and writers racing the fold
on PostgreSQL.
"""

from __future__ import annotations

import random
import threading
from datetime import timedelta

from sqlalchemy import Engine, func, select, text

from jobplane import service, store
from jobplane.maintenance.folder import CountFolder
from jobplane.models import TaskCount, utcnow
from jobplane.service import Submission
from jobplane.settings import Settings
from tests.integration.test_transitions import counted, tallied


def submit(engine: Engine, count: int, job_type: str = "demo.noop") -> list[str]:
    now = utcnow()
    tasks = [service.build_task(Submission(type=job_type), Settings(), now) for _ in range(count)]
    with engine.begin() as conn:
        store.tasks.insert_tasks(conn, tasks)
    return [task.id for task in tasks]


def run_to_the_end(engine: Engine, task_ids: list[str], *, fail: bool = False) -> None:
    now = utcnow()
    with engine.begin() as conn:
        store.claims.claim_tasks(
            conn, [(task_id, 1) for task_id in task_ids], worker="w:1", now=now
        )
        if fail:
            for task_id in task_ids:
                store.claims.fail_task(conn, task_id, 1, error="boom", now=now)
        else:
            store.claims.complete_tasks(conn, [(task_id, 1, None) for task_id in task_ids], now)


def count_rows(engine: Engine) -> int:
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(TaskCount)).scalar_one()


def test_counts_follow_batches_retention_and_the_fold(any_engine: Engine) -> None:
    # Given tasks of two types submitted in batches, some run to the end, some failed
    echo = submit(any_engine, 30, "demo.echo")
    noop = submit(any_engine, 20)
    run_to_the_end(any_engine, echo[:25])
    run_to_the_end(any_engine, noop[:5], fail=True)
    assert counted(any_engine) == tallied(any_engine)
    assert tallied(any_engine)[("demo.echo", "default", "", "completed")] == (25, 0)

    # When retention deletes the finished ones older than a cutoff in the future
    with any_engine.begin() as conn:
        deleted = store.retention.delete_finished_before(conn, utcnow() + timedelta(days=1), 1000)
    # Then they are gone from the counts as well
    assert deleted == 30
    assert counted(any_engine) == tallied(any_engine)
    assert ("demo.echo", "default", "", "completed") not in tallied(any_engine)

    # And the fold leaves one row per key, and the same sums
    before = tallied(any_engine)
    CountFolder(any_engine).run_once()
    assert tallied(any_engine) == before == counted(any_engine)
    assert count_rows(any_engine) == len(before)


def test_truncating_the_tasks_empties_the_counts(pg_engine: Engine) -> None:
    submit(pg_engine, 3)
    with pg_engine.begin() as conn:
        conn.execute(text("TRUNCATE jobplane_tasks"))
    assert tallied(pg_engine) == {} == counted(pg_engine)


def test_writers_racing_the_fold_neither_lose_nor_double_a_change(pg_engine: Engine) -> None:
    # Given 400 pending tasks
    ids = submit(pg_engine, 400)
    CountFolder(pg_engine).run_once()
    chunks = [ids[start : start + 10] for start in range(0, len(ids), 10)]
    random.Random(7).shuffle(chunks)
    work = iter(chunks)
    lock = threading.Lock()
    errors: list[BaseException] = []
    writers_done = threading.Event()

    def writer() -> None:
        try:
            while True:
                with lock:
                    chunk = next(work, None)
                if chunk is None:
                    return
                run_to_the_end(pg_engine, chunk, fail=chunk[0] < "4")
        except BaseException as error:  # reported by the test's thread
            errors.append(error)

    def folder() -> None:
        try:
            while not writers_done.is_set():
                CountFolder(pg_engine).run_once()
        except BaseException as error:
            errors.append(error)

    # When four writers run them to the end, each batch in its own transaction, while
    # the fold runs again and again
    writers = [threading.Thread(target=writer) for _ in range(4)]
    folding = threading.Thread(target=folder)
    folding.start()
    for thread in writers:
        thread.start()
    for thread in writers:
        thread.join(timeout=120)
    writers_done.set()
    folding.join(timeout=60)

    # Then the counts equal the table's, before and after a last fold
    assert not errors, errors
    assert counted(pg_engine) == tallied(pg_engine)
    assert sum(n for n, _ in tallied(pg_engine).values()) == 400
    assert "pending" not in {key[3] for key in tallied(pg_engine)}
    CountFolder(pg_engine).run_once()
    assert counted(pg_engine) == tallied(pg_engine)
