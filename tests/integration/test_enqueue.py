"""``jobplane.enqueue`` in the application's own transaction, ``enqueue_many``, and a
``Job``'s ``.enqueue``, ``.delay`` and ``.apply``, on PostgreSQL and SQLite.

The application's engines here are plain ``create_engine`` ones, as a user's are: no
jobplane timeouts, no schema translation.
"""

from __future__ import annotations

import asyncio
import inspect
import json
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import psycopg
import pytest
import redis
from sqlalchemy import Connection, Engine, create_engine, func, select, text
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine
from sqlalchemy.orm import Session

import jobplane
from jobplane import registry
from jobplane.broker.factory import make_broker
from jobplane.db import make_engine, schema_of
from jobplane.library.engine import default_engine, reset_default_engine
from jobplane.library.handles import TaskHandle
from jobplane.migrate import upgrade
from jobplane.models import OUTBOX_CHANNEL, Outbox, Task, Workflow, utcnow
from jobplane.outbox.relay import Relay
from jobplane.settings import Settings
from tests.conftest import DEFAULT_MESSAGES, row_counts
from tests.enqueue_jobs import add

ORDERS = "enqueue_orders"  # the application's own table


@pytest.fixture
def user_engine(any_url: str) -> Iterator[Engine]:
    """The application's engine, with a table of its own."""
    engine = create_engine(any_url)
    with engine.begin() as conn:
        conn.execute(text(f"CREATE TABLE {ORDERS} (id INTEGER PRIMARY KEY, note TEXT)"))
    yield engine
    engine.dispose()


@pytest.fixture
def library_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., None]]:
    """Point the library's settings (``JOBPLANE_*``) at a database, for this test."""

    def use(url: str, **settings: str) -> None:
        monkeypatch.setenv("JOBPLANE_DATABASE_URL", url)
        for name, value in settings.items():
            monkeypatch.setenv(f"JOBPLANE_{name.upper()}", value)
        reset_default_engine()

    yield use
    reset_default_engine()


def orders(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text(f"SELECT count(*) FROM {ORDERS}")).scalar_one())


def task_row(engine: Engine, task_id: str) -> Any:
    with engine.connect() as conn:
        return conn.execute(select(Task).where(Task.id == task_id)).one()


def test_a_task_enqueued_in_a_session_commits_with_the_users_row_and_the_relay_publishes_it(
    user_engine: Engine, any_url: str, redis_url: str, redis_client: redis.Redis
) -> None:
    # Given the application's transaction writing its row and enqueueing a job
    with Session(user_engine) as session, session.begin():
        session.execute(text(f"INSERT INTO {ORDERS} VALUES (1, 'first')"))
        task_id = jobplane.enqueue(session, "tests.enqueue.read_row", {"row_id": 1})

    # Then both are committed: the pending task and its outbox row beside the user's row
    assert orders(user_engine) == 1
    assert row_counts(user_engine) == {"tasks": 1, "outbox": 1, "task_logs": 0}
    row = task_row(user_engine, task_id)
    assert (row.type, row.status, row.params, row.queue) == (
        "tests.enqueue.read_row",
        "pending",
        {"row_id": 1},
        "default",
    )

    # and the relay publishes it (SQLite: at its next poll; here, at once)
    engine = make_engine(any_url)
    broker = make_broker(redis_url)
    try:
        assert Relay(engine, broker, Settings(database_url=any_url)).drain() == 1
    finally:
        broker.client.close()  # type: ignore[attr-defined]
        engine.dispose()
    assert redis_client.hlen(DEFAULT_MESSAGES) == 1


def test_a_rolled_back_transaction_leaves_no_task_and_no_outbox_row(user_engine: Engine) -> None:
    # Given a Connection's transaction and a Session's, each rolled back after enqueueing
    with user_engine.connect() as conn:
        conn.execute(text(f"INSERT INTO {ORDERS} VALUES (1, 'gone')"))
        jobplane.enqueue(conn, "tests.enqueue.read_row", {"row_id": 1})
        conn.rollback()
    with pytest.raises(RuntimeError, match="the handler failed"):
        with Session(user_engine) as session, session.begin():
            jobplane.enqueue(session, add, {"a": 1})
            jobplane.enqueue_many(session, [add.new_task(2), add.new_task(3)])
            raise RuntimeError("the handler failed")

    # Then nothing of either is left
    assert orders(user_engine) == 0
    assert row_counts(user_engine) == {"tasks": 0, "outbox": 0, "task_logs": 0}


DEEPER_THAN_32 = r"params\.a(\[0\]){31}: nested deeper than 32 levels"
BAD_ENQUEUES: list[tuple[dict[str, Any], type[jobplane.JobplaneError], str]] = [
    ({"params": {"c": 1}}, jobplane.InvalidParams, "do not fit job 'tests.enqueue.add'"),
    ({"params": {"a": "x" * 70_000}}, jobplane.ParamsTooLarge, "the limit is 65536"),
    ({"params": [1]}, jobplane.InvalidParams, "must be a JSON object"),
    ({"params": {"a": float("nan")}}, jobplane.InvalidParams, "params.a: NaN is not a JSON"),
    ({"params": {"a": object()}}, jobplane.InvalidParams, "params.a: a value of type object"),
    # what PostgreSQL's jsonb would refuse at the insert, aborting the transaction
    ({"params": {"a": "a\x00b"}}, jobplane.InvalidParams, "params.a: a string holds a NUL"),
    ({"params": {"a\x00": 1}}, jobplane.InvalidParams, "params: the key .* holds a NUL"),
    ({"params": {"a": "\udc80"}}, jobplane.InvalidParams, "params.a: .* lone surrogate"),
    ({"params": {"\ud800": 1}}, jobplane.InvalidParams, "params: the key .* lone surrogate"),
    # stored, but then unreadable by the API
    ({"params": {"a": json.loads("[" * 32 + "]" * 32)}}, jobplane.InvalidParams, DEEPER_THAN_32),
    ({"queue": "no spaces"}, jobplane.InvalidParams, "invalid queue name"),
    ({"delay": -1}, jobplane.InvalidParams, "delay must be a number from 0"),
    ({"priority": 5000}, jobplane.InvalidParams, "priority must be a number from -1000"),
    ({"max_retries": 101}, jobplane.InvalidParams, "max_retries must be"),
    ({"timeout": 0}, jobplane.InvalidParams, "timeout must be"),
    ({"idempotency_key": " "}, jobplane.InvalidParams, "idempotency key is 1 to 200"),
    ({"idempotency_key": "k" * 201}, jobplane.InvalidParams, "idempotency key is 1 to 200"),
    ({"type": ""}, jobplane.InvalidParams, "a job type is a name of 1 to 200"),
]


def test_every_invalid_enqueue_raises_before_writing_and_the_transaction_goes_on(
    user_engine: Engine,
) -> None:
    with user_engine.connect() as conn:
        conn.execute(text(f"INSERT INTO {ORDERS} VALUES (1, 'kept')"))
        # When each invalid enqueue is tried in the application's open transaction
        for options, error, message in BAD_ENQUEUES:
            arguments = {"type": "tests.enqueue.add", "params": {"a": 1}, **options}
            with pytest.raises(error, match=message):
                jobplane.enqueue(conn, **arguments)
        with pytest.raises(jobplane.InvalidParams, match=r"tasks\[1\]: params do not fit"):
            jobplane.enqueue_many(conn, [add.new_task(1), jobplane.NewTask(add, {"z": 1})])
        with pytest.raises(TypeError, match="Session or Connection"):
            jobplane.enqueue(user_engine, add, {"a": 1})  # type: ignore[arg-type]
        # Then the transaction is still usable (PostgreSQL did not abort it)
        valid = jobplane.enqueue(conn, add, {"a": 1})
        conn.commit()

    # and only the valid enqueue and the application's row were written
    assert orders(user_engine) == 1
    assert row_counts(user_engine) == {"tasks": 1, "outbox": 1, "task_logs": 0}
    assert task_row(user_engine, valid).params == {"a": 1}


def test_an_idempotency_key_answers_the_same_task_and_refuses_another_body(
    user_engine: Engine,
) -> None:
    # Given a task enqueued and committed with a key
    with Session(user_engine) as session, session.begin():
        first = jobplane.enqueue(session, add, {"a": 1}, idempotency_key="order-1")

    # When the same submission comes again, then another under the same key
    with Session(user_engine) as session, session.begin():
        again = jobplane.enqueue(session, add, {"a": 1}, idempotency_key="order-1")
    with Session(user_engine) as session, session.begin():
        with pytest.raises(jobplane.IdempotencyConflict, match=first):
            jobplane.enqueue(session, add, {"a": 2}, idempotency_key="order-1")
        session.execute(text(f"INSERT INTO {ORDERS} VALUES (1, 'still committed')"))

    # Then the same task answers, and one task exists; the conflict spoilt no transaction
    assert again == first
    assert row_counts(user_engine) == {"tasks": 1, "outbox": 1, "task_logs": 0}
    assert orders(user_engine) == 1


def test_defaults_come_from_the_job_when_registered_and_from_the_settings_when_not(
    user_engine: Engine,
) -> None:
    assert "tests.enqueue.elsewhere" not in registry.known_types()
    with Session(user_engine) as session, session.begin():
        registered = add.enqueue(session, 2, b=3)
        remote = jobplane.enqueue(session, "tests.enqueue.elsewhere", {"anything": [1]})
        chosen = jobplane.enqueue(
            session,
            "tests.enqueue.elsewhere",
            queue="mail",
            priority=-3,
            delay=timedelta(minutes=1),
            max_retries=0,
            timeout=5,
        )
    before = utcnow()

    # A registered job's task has the job's defaults and its positional args named
    row = task_row(user_engine, registered)
    assert (row.params, row.queue, row.priority, row.max_retries, row.timeout_seconds) == (
        {"a": 2, "b": 3},
        "sums",
        5,
        7,
        60,
    )
    # an unregistered type's, the settings' defaults, or what was given
    defaults = Settings()
    row = task_row(user_engine, remote)
    assert (row.params, row.queue, row.priority, row.max_retries, row.timeout_seconds) == (
        {"anything": [1]},
        "default",
        0,
        defaults.default_max_retries,
        defaults.default_timeout,
    )
    row = task_row(user_engine, chosen)
    assert (row.params, row.queue, row.priority, row.max_retries, row.timeout_seconds) == (
        {},
        "mail",
        -3,
        0,
        5,
    )
    assert row.run_after.replace(tzinfo=None) > (before + timedelta(seconds=50)).replace(
        tzinfo=None
    )


def test_enqueue_many_writes_large_lists_in_order(user_engine: Engine) -> None:
    tasks = [add.new_task(n, b=1) for n in range(4500)]  # more than one statement's worth
    with user_engine.begin() as conn:
        ids = jobplane.enqueue_many(conn, tasks)
        assert jobplane.enqueue_many(conn, []) == []
    assert len(set(ids)) == 4500
    assert row_counts(user_engine) == {"tasks": 4500, "outbox": 4500, "task_logs": 0}
    assert task_row(user_engine, ids[4321]).params == {"a": 4321, "b": 1}


def test_enqueue_async_on_an_async_session_and_connection(pg_url: str) -> None:
    async def main() -> tuple[str, str]:
        engine = create_async_engine(pg_url)
        try:
            async with AsyncSession(engine) as session, session.begin():
                from_session = await jobplane.enqueue_async(session, add, {"a": 1})
            async with engine.connect() as conn:
                from_connection = await jobplane.enqueue_async(
                    conn, "tests.enqueue.add", {"a": 2}, idempotency_key="async-2"
                )
                await conn.commit()
            async with engine.connect() as conn:
                await jobplane.enqueue_async(conn, add, {"a": 3})
                await conn.rollback()
            return from_session, from_connection
        finally:
            await engine.dispose()

    from_session, from_connection = asyncio.run(main())
    engine = make_engine(pg_url)
    try:
        assert row_counts(engine) == {"tasks": 2, "outbox": 2, "task_logs": 0}
        assert task_row(engine, from_session).params == {"a": 1}
        assert task_row(engine, from_connection).idempotency_key == "async-2"
    finally:
        engine.dispose()


def test_on_postgresql_the_relay_is_notified_at_the_users_commit_not_before(pg_url: str) -> None:
    listener = psycopg.connect(pg_url.replace("+psycopg", ""), autocommit=True)
    listener.execute(f"LISTEN {OUTBOX_CHANNEL}")
    engine = create_engine(pg_url)
    try:
        with Session(engine) as session, session.begin():
            jobplane.enqueue(session, add, {"a": 1})
            assert list(listener.notifies(timeout=0.2, stop_after=1)) == []
        assert len(list(listener.notifies(timeout=10, stop_after=1))) == 1
    finally:
        listener.close()
        engine.dispose()


def test_with_a_db_schema_jobplane_rows_go_to_it_and_the_users_statements_keep_theirs(
    pg_url: str, library_env: Callable[..., None]
) -> None:
    # Given jobplane in schema app_jobs (and, as a decoy, in public), the settings saying
    # so, and the application's plain engine with its own table in public
    upgrade(pg_url, schema="app_jobs")
    library_env(pg_url, db_schema="app_jobs")
    engine = create_engine(pg_url)
    with engine.begin() as conn:
        conn.execute(text(f"CREATE TABLE {ORDERS} (id INTEGER PRIMARY KEY, note TEXT)"))

    # When it writes its row and enqueues, with and without a key, one and many
    with Session(engine) as session, session.begin():
        jobplane.enqueue(session, add, {"a": 1})
        session.execute(text(f"INSERT INTO {ORDERS} VALUES (1, 'in public')"))
        keyed = jobplane.enqueue(session, add, {"a": 2}, idempotency_key="k")
        jobplane.enqueue_many(session, [add.new_task(3), add.new_task(4)])
        assert jobplane.enqueue(session, add, {"a": 2}, idempotency_key="k") == keyed
        after = session.connection()
        assert schema_of(after) is None  # its translation was only for jobplane's statements

    # Then jobplane's rows are all in the schema, the user's row in public
    def count(conn: Connection, table: str) -> int:
        return int(conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one())

    with engine.connect() as conn:
        assert count(conn, "app_jobs.jobplane_tasks") == 4
        assert count(conn, "app_jobs.jobplane_outbox") == 4
        assert count(conn, "public.jobplane_tasks") == 0
        assert count(conn, f"public.{ORDERS}") == 1
    engine.dispose()

    # and .delay on the default engine finds the schema too
    handle = add.delay(5)
    with default_engine().connect() as conn:
        assert conn.execute(select(Task.params).where(Task.id == handle.id)).scalar() == {"a": 5}
        assert conn.execute(select(func.count()).select_from(Outbox)).scalar() == 5


def test_a_job_is_still_the_function_with_its_name_doc_and_signature() -> None:
    raw = registry.get_job("tests.enqueue.add").fn
    assert isinstance(add, jobplane.Job)
    assert add(2, b=3) == 5 == raw(2, b=3)
    assert (add.__name__, add.__doc__, add.__module__) == (
        "add",
        "The sum of ``a`` and ``b``.",
        "tests.enqueue_jobs",
    )
    assert inspect.signature(add) == inspect.signature(raw)
    assert add.name == "tests.enqueue.add" and raw is not add
    assert add.params(1, 2) == {"a": 1, "b": 2} == add.params(a=1, b=2)
    with pytest.raises(jobplane.InvalidParams, match="do not fit"):
        add.params(1, 2, 3)  # type: ignore[call-arg]


def test_delay_and_apply_commit_a_pending_task_in_their_own_transaction(
    any_url: str, library_env: Callable[..., None]
) -> None:
    library_env(any_url)
    handle = add.delay(1, b=2)
    applied = add.apply({"a": 3}, queue="other", delay=60, idempotency_key="apply-1")
    again = add.apply({"a": 3}, queue="other", delay=60, idempotency_key="apply-1")

    # Another connection sees them committed and pending
    engine = make_engine(any_url)
    try:
        row = task_row(engine, handle.id)
        assert (row.status, row.params, row.queue) == ("pending", {"a": 1, "b": 2}, "sums")
        row = task_row(engine, applied.id)
        assert (row.status, row.params, row.queue) == ("pending", {"a": 3}, "other")
        assert again.id == applied.id
        assert row_counts(engine) == {"tasks": 2, "outbox": 2, "task_logs": 0}
    finally:
        engine.dispose()
    assert isinstance(handle, TaskHandle)
    assert handle._engine is default_engine()


def test_a_workflows_delay_with_an_idempotency_key_writes_it_once(
    any_url: str, library_env: Callable[..., None]
) -> None:
    library_env(any_url)
    flow = jobplane.chain(add.s(a=1), add.s(a=2))
    first = flow.delay(idempotency_key="nightly-1")
    again = flow.delay(idempotency_key="nightly-1")
    with pytest.raises(jobplane.IdempotencyConflict, match=first.id):
        jobplane.chain(add.s(a=1), add.s(a=3)).delay(idempotency_key="nightly-1")

    engine = make_engine(any_url)
    try:
        assert again.id == first.id
        assert workflow_ids(engine) == [first.id]
    finally:
        engine.dispose()


def workflow_ids(engine: Engine) -> list[str]:
    with engine.connect() as conn:
        return list(conn.execute(select(Workflow.id)).scalars())


def test_a_workflow_enqueued_with_an_idempotency_key_is_written_once(
    user_engine: Engine,
) -> None:
    # Given a workflow enqueued and committed with a key
    flow = jobplane.chain(add.s(a=1), jobplane.group(add.s(a=2), add.s(a=3)))
    with Session(user_engine) as session, session.begin():
        first = jobplane.enqueue(session, flow, idempotency_key="import-7")

    # When the same workflow comes again under that key, then another one
    with Session(user_engine) as session, session.begin():
        again = jobplane.enqueue(session, flow, idempotency_key="import-7")
    other = jobplane.chain(add.s(a=1), jobplane.group(add.s(a=2), add.s(a=4)))
    with Session(user_engine) as session, session.begin():
        with pytest.raises(jobplane.IdempotencyConflict, match=first.id) as conflict:
            jobplane.enqueue(session, other, idempotency_key="import-7")
        session.execute(text(f"INSERT INTO {ORDERS} VALUES (1, 'still committed')"))

    # Then the first workflow answers, and it alone was written; the conflict spoilt
    # no transaction
    assert isinstance(again, jobplane.WorkflowHandle)
    assert again.id == first.id
    assert conflict.value.workflow_id == first.id
    assert workflow_ids(user_engine) == [first.id]
    assert row_counts(user_engine) == {"tasks": 3, "outbox": 1, "task_logs": 0}
    assert orders(user_engine) == 1


def test_a_workflows_bad_idempotency_key_raises_before_writing(user_engine: Engine) -> None:
    with user_engine.connect() as conn:
        for key in ("", " \t", "k" * 201):
            with pytest.raises(jobplane.InvalidParams, match="idempotency key is 1 to 200"):
                jobplane.enqueue(conn, jobplane.chain(add.s(a=1)), idempotency_key=key)
        with pytest.raises(TypeError, match="its steps carry their own params"):
            jobplane.enqueue(conn, jobplane.chain(add.s(a=1)), {"a": 1})  # type: ignore[call-overload]
        # An option for a task is refused too, rather than left unused: a step's own
        # come from Step.set
        for option in ("queue", "priority", "delay", "max_retries", "timeout"):
            with pytest.raises(TypeError, match=f"a workflow takes no {option}: it starts"):
                jobplane.enqueue(conn, jobplane.chain(add.s(a=1)), **{option: 1})  # type: ignore[call-overload]
        conn.commit()
    assert workflow_ids(user_engine) == []
    assert row_counts(user_engine)["tasks"] == 0
