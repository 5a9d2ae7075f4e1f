"""The schema comes from the migrations, on PostgreSQL and SQLite alike."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from alembic import command
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError
from sqlalchemy import Column, Engine, MetaData, Table, insert, inspect, select, text

from jobplane import service, store
from jobplane.db import make_engine
from jobplane.migrate import (
    LEGACY_VERSION_TABLE,
    MIGRATIONS,
    VERSION_TABLE,
    alembic_config,
    upgrade,
    version_table_options,
)
from jobplane.models import (
    OUTBOX_CHANNEL,
    Base,
    KeyValue,
    MetricCounter,
    Outbox,
    ScheduleRun,
    ScheduleState,
    Task,
    TaskLog,
)
from jobplane.service import Submission
from jobplane.settings import Settings
from tests import catalog, services

FIRE = datetime(2026, 11, 30, 21, 0, tzinfo=UTC)
NOW = datetime(2026, 12, 1, 9, 30, tzinfo=UTC)
#: The newest revision, where every upgrade ends.
HEAD = ScriptDirectory(str(MIGRATIONS)).get_current_head()
MODELS = (Task, Outbox, TaskLog, ScheduleState, ScheduleRun, MetricCounter, KeyValue)
#: Columns of those tables that revisions after 0008 added, by table.
ADDED_SINCE_0008 = {
    "jobplane_tasks": frozenset(
        {"updated_at", "workflow_id", "waiting_on", "pipe_from", "callbacks"}
    ),
    "jobplane_outbox": frozenset({"priority"}),
}


def columns_at_0008(table: Table) -> list[Column[Any]]:
    """The columns ``table`` (of the models) had at revision 0008."""
    added = ADDED_SINCE_0008.get(table.name, frozenset())
    return [column for column in table.columns if column.name not in added]


def _new_pg_database(request: pytest.FixtureRequest) -> str:
    name = f"jobplane_migrations_{id(request)}"
    services.admin_execute(f'DROP DATABASE IF EXISTS "{name}"')
    services.admin_execute(f'CREATE DATABASE "{name}"')
    request.addfinalizer(lambda: services.admin_execute(f'DROP DATABASE "{name}" WITH (FORCE)'))
    return services.pg_url(name)


@pytest.fixture(params=["postgresql", "sqlite"])
def empty_database(request: pytest.FixtureRequest, tmp_path: Path, postgres: None) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'm.db'}"
    return _new_pg_database(request)


@pytest.fixture
def empty_pg_database(request: pytest.FixtureRequest, postgres: None) -> str:
    return _new_pg_database(request)


@pytest.fixture
def engine(empty_database: str) -> Iterator[Engine]:
    engine = make_engine(empty_database)
    yield engine
    engine.dispose()


def legacy(model: type[Base]) -> Table:
    """``model``'s table under its name before revision 0008 (``tasks`` for ``Task``),
    with the columns it had then."""
    return at_0008(model, str(model.__tablename__).removeprefix("jobplane_"))


def at_0008(model: type[Base], name: str | None = None) -> Table:
    """``model``'s table (under ``name``) with the columns it had at revision 0008."""
    return Table(
        name or model.__tablename__,
        MetaData(),
        *(
            Column(column.name, column.type, primary_key=column.primary_key)
            for column in columns_at_0008(model.__table__)  # type: ignore[arg-type]
        ),
    )


def make_legacy_deployment(url: str, revision: str = "0007") -> None:
    """A database as jobplane left it before 0008: at ``revision``, under the old names,
    its version in Alembic's default table ``alembic_version``."""
    upgrade(url, revision)
    engine = make_engine(url)
    with engine.begin() as conn:
        Table(VERSION_TABLE, MetaData()).drop(conn)
        script = ScriptDirectory.from_config(alembic_config(url))
        MigrationContext.configure(conn).stamp(script, revision)
    engine.dispose()


def versions(engine: Engine) -> dict[str, list[str] | None]:
    """The rows of jobplane's version table and of ``alembic_version`` (None: no table)."""
    found: dict[str, list[str] | None] = {}
    with engine.connect() as conn:
        for name in (VERSION_TABLE, LEGACY_VERSION_TABLE):
            exists = inspect(conn).has_table(name)
            rows = conn.execute(text(f"SELECT version_num FROM {name}")) if exists else None
            found[name] = sorted(rows.scalars()) if rows is not None else None
    return found


def one_row_of_each(now: datetime) -> dict[str, list[dict[str, Any]]]:
    """Rows for every table jobplane has, by its name before 0008."""
    task = replace(
        service.build_task(Submission(type="demo.echo", params={"n": 1}), Settings(), now),
        schedule_name="nightly",
        fire_time=FIRE,
        idempotency_key="k1",
    ).columns()
    done = replace(
        service.build_task(Submission(type="demo.noop"), Settings(), now),
        status="completed",
        result={"ok": True},
        attempts=1,
        completed_at=now,
    ).columns()
    for row in (task, done):
        for name in ADDED_SINCE_0008[Task.__tablename__]:
            del row[name]
    return {
        "tasks": [task, done],
        "outbox": [
            {
                "task_id": task["id"],
                "dispatch": 1,
                "available_at": now,
                "created_at": now,
                "type": "demo.echo",
                "queue": "default",
                "timeout_seconds": 60,
            }
        ],
        "task_logs": [
            {"task_id": done["id"], "level": "INFO", "message": f"line {i}", "created_at": now}
            for i in range(3)
        ],
        "schedules": [{"name": "nightly", "first_seen_at": now - timedelta(days=3)}],
        "schedule_runs": [
            {
                "schedule_name": "nightly",
                "fire_time": FIRE,
                "task_id": task["id"],
                "recorded_at": now,
            }
        ],
        "metric_counters": [{"name": "jobplane_recovered", "label": "lost_worker", "value": 7}],
        "platform_state": [{"key": "broker_epoch", "value": "e1", "updated_at": now}],
    }


def read_all(engine: Engine, tables: list[Table]) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of ``tables``, keyed by the name before 0008, in primary-key order."""
    with engine.connect() as conn:
        return {
            t.name.removeprefix("jobplane_"): [
                tuple(row)
                for row in conn.execute(
                    select(*columns_at_0008(t)).order_by(*t.primary_key.columns)
                )
            ]
            for t in tables
        }


def test_upgrade_head_matches_the_models(empty_database: str) -> None:
    upgrade(empty_database)
    # alembic check raises if autogenerate would find any difference.
    command.check(alembic_config(empty_database))


def test_downgrade_to_base_and_up_again(empty_database: str) -> None:
    config = alembic_config(empty_database)
    upgrade(empty_database)
    command.downgrade(config, "base")
    upgrade(empty_database)
    command.check(config)


def test_check_detects_a_schema_that_is_behind(empty_database: str) -> None:
    # An un-migrated database differs from the models: check must say so.
    with pytest.raises(CommandError):
        command.check(alembic_config(empty_database))


def test_the_history_ends_where_a_new_database_starts(empty_database: str, tmp_path: Path) -> None:
    # Given one database made by running every migration, one made from the models
    # (what a new database gets), on the same kind of server
    upgrade(empty_database, "0007")
    upgrade(empty_database)
    if empty_database.startswith("sqlite"):
        fresh = f"sqlite:///{tmp_path / 'fresh.db'}"
    else:
        fresh = empty_database + "_fresh"
        services.admin_execute(f'CREATE DATABASE "{fresh.rsplit("/", 1)[1]}"')
    try:
        upgrade(fresh)

        # Then both hold the same tables, columns, keys, indexes, sequences, trigger and
        # function, every name prefixed, and both are where the models are
        described, names = [], []
        for url in (empty_database, fresh):
            engine = make_engine(url)
            with engine.connect() as conn:
                described.append(catalog.described(conn))
                names.append(catalog.object_names(conn, "public"))
            engine.dispose()
            command.check(alembic_config(url))
    finally:
        if not fresh.startswith("sqlite"):
            services.admin_execute(f'DROP DATABASE "{fresh.rsplit("/", 1)[1]}" WITH (FORCE)')
    assert described[0] == described[1]
    assert names[0] == names[1]
    assert [name for _, name in names[0] if not name.startswith("jobplane_")] == []


def test_0008_moves_a_deployment_with_every_row_and_back(
    empty_database: str, engine: Engine
) -> None:
    # Given a deployment at 0007, its version in alembic_version, a row or more in every table
    make_legacy_deployment(empty_database)
    rows = one_row_of_each(NOW)
    with engine.begin() as conn:
        for model in MODELS:
            conn.execute(insert(legacy(model)), rows[legacy(model).name])
    before = read_all(engine, [legacy(model) for model in MODELS])

    # When jobplane migrate runs
    upgrade(empty_database)

    # Then every row is there under the new names, the version moved over (and
    # alembic_version, holding nothing else, is gone), and the schema is the models'
    after = read_all(engine, [model.__table__ for model in MODELS])  # type: ignore[misc]
    assert after == before and all(after.values())
    assert versions(engine) == {VERSION_TABLE: [HEAD], LEGACY_VERSION_TABLE: None}
    command.check(alembic_config(empty_database))
    with engine.connect() as conn:
        assert [n for _, n in catalog.object_names(conn, "public") if "jobplane_" not in n] == []

    # And a downgrade to 0007 puts the old names back with the rows, and up again
    command.downgrade(alembic_config(empty_database), "0007")
    assert read_all(engine, [legacy(model) for model in MODELS]) == before
    upgrade(empty_database)
    assert read_all(engine, [model.__table__ for model in MODELS]) == before  # type: ignore[misc]


def test_after_0008_ids_go_on_from_the_renamed_sequences_and_inserts_still_notify(
    empty_pg_database: str,
) -> None:
    # Given a PostgreSQL deployment at 0007 with outbox rows and log lines, moved by 0008
    make_legacy_deployment(empty_pg_database)
    rows = one_row_of_each(NOW)
    engine = make_engine(empty_pg_database)
    try:
        with engine.begin() as conn:
            conn.execute(insert(legacy(Outbox)), rows["outbox"] * 3)
            conn.execute(insert(legacy(TaskLog)), rows["task_logs"])
        upgrade(empty_pg_database)

        # When a relay listens and a new outbox row and log line are inserted
        dsn = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
        listener = psycopg.connect(dsn, autocommit=True)
        listener.execute(f"LISTEN {OUTBOX_CHANNEL}")
        with engine.begin() as conn:
            outbox_id = conn.execute(insert(Outbox).returning(Outbox.id), rows["outbox"]).scalar()
            log_id = conn.execute(
                insert(TaskLog).returning(TaskLog.id), rows["task_logs"][:1]
            ).scalar()
        notified = [n.channel for n in listener.notifies(timeout=5, stop_after=1)]
        listener.close()
    finally:
        engine.dispose()

    # Then their ids follow the old ones, and the relay was woken on the new channel
    assert (outbox_id, log_id) == (4, 4)
    assert notified == [OUTBOX_CHANNEL]


def test_the_runs_ledger_is_filled_from_the_scheduled_runs_kept_and_goes_on_downgrade(
    empty_database: str,
) -> None:
    # Given a database before the ledger with a scheduled run, a run started by hand
    # (no fire time) and an ordinary task
    config = alembic_config(empty_database)
    upgrade(empty_database, "0006")
    engine = make_engine(empty_database)
    old_tasks, old_runs = legacy(Task), legacy(ScheduleRun)
    try:
        now = datetime.now(UTC)
        rows = [service.build_task(Submission(type="demo.noop"), Settings(), now) for _ in "abc"]
        rows[0] = replace(rows[0], schedule_name="nightly", fire_time=FIRE)
        rows[1] = replace(rows[1], schedule_name="nightly")
        with engine.begin() as conn:
            conn.execute(insert(old_tasks), [row.columns() for row in rows])

        # When it is upgraded, downgraded and upgraded again
        upgrade(empty_database, "0007")
        with engine.connect() as conn:
            first = conn.execute(select(old_runs)).all()
        command.downgrade(config, "0006")
        with engine.connect() as conn:
            tables = inspect(conn).get_table_names()
            tasks = conn.execute(select(old_tasks.c.id)).scalars().all()
        upgrade(empty_database)
        with engine.connect() as conn:
            again = conn.execute(select(ScheduleRun)).all()
    finally:
        engine.dispose()

    # Then the ledger holds the scheduled run, only while it exists, and no task is lost
    assert [(r.schedule_name, r.fire_time, r.task_id) for r in first] == [
        ("nightly", FIRE, rows[0].id)
    ]
    assert "schedule_runs" not in tables and len(tasks) == 3
    assert again == first
    command.check(config)


def test_0010_counts_the_tasks_kept_and_the_triggers_go_on_counting(empty_database: str) -> None:
    # Given a database at 0009 with tasks of two types, one a scheduled run, one retried
    upgrade(empty_database, "0009")
    engine = make_engine(empty_database)
    now = datetime.now(UTC)
    rows = [service.build_task(Submission(type="demo.noop"), Settings(), now) for _ in range(3)]
    rows.append(service.build_task(Submission(type="demo.echo"), Settings(), now))
    rows[0] = replace(rows[0], schedule_name="nightly", fire_time=FIRE, status="completed")
    rows[1] = replace(rows[1], retry_count=2)
    try:
        with engine.begin() as conn:
            conn.execute(insert(at_0008(Task)), [row.columns() for row in rows])

        # When it is upgraded, and a task is added after
        upgrade(empty_database)
        with engine.begin() as conn:
            store.tasks.insert_tasks(
                conn, [service.build_task(Submission(type="demo.echo"), Settings(), now)]
            )
            counts = {
                (r.type, r.schedule, r.status): (r.tasks, r.retries)
                for r in store.counts.task_counts(conn)
            }
    finally:
        engine.dispose()

    # Then the counts hold the tasks that were there and the one added since
    assert counts == {
        ("demo.noop", "nightly", "completed"): (1, 0),
        ("demo.noop", "", "pending"): (2, 2),
        ("demo.echo", "", "pending"): (2, 0),
    }


USERS_TASKS = "CREATE TABLE tasks (id integer PRIMARY KEY, title text NOT NULL)"


@pytest.mark.parametrize("revision", ["user_0007", "0003"])
def test_an_alembic_version_of_the_users_is_left_alone(
    empty_database: str, engine: Engine, revision: str
) -> None:
    # Given the user's own Alembic history (at a revision jobplane never had, or at one
    # of jobplane's numbers but without jobplane's tables) and the user's own tasks table
    with engine.begin() as conn:
        conn.execute(text(USERS_TASKS))
        conn.execute(text("INSERT INTO tasks VALUES (1, 'mine')"))
        conn.execute(text("CREATE TABLE alembic_version (version_num varchar(32) PRIMARY KEY)"))
        conn.execute(text("INSERT INTO alembic_version VALUES (:v)"), {"v": revision})

    # When jobplane migrate runs, twice
    upgrade(empty_database)
    upgrade(empty_database)

    # Then jobplane has its own version table and tables; the user's are as they were,
    # and alembic check does not count them as tables to drop
    assert versions(engine) == {VERSION_TABLE: [HEAD], LEGACY_VERSION_TABLE: [revision]}
    with engine.connect() as conn:
        assert conn.execute(text("SELECT * FROM tasks")).all() == [(1, "mine")]
        assert inspect(conn).has_table("jobplane_tasks")
    command.check(alembic_config(empty_database))


def test_jobplanes_row_leaves_an_alembic_version_it_shared_with_the_user(
    empty_database: str, engine: Engine
) -> None:
    # Given a deployment at 0005 whose alembic_version also holds the user's revision
    make_legacy_deployment(empty_database, "0005")
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO alembic_version VALUES ('user_0007')"))

    # When jobplane migrate runs
    upgrade(empty_database)

    # Then jobplane went on from 0005 in its own table; the user's row stays where it was
    assert versions(engine) == {VERSION_TABLE: [HEAD], LEGACY_VERSION_TABLE: ["user_0007"]}
    command.check(alembic_config(empty_database))


def test_in_a_schema_of_its_own_nothing_is_created_in_public(empty_pg_database: str) -> None:
    # Given a database whose public schema holds the user's tables
    engine = make_engine(empty_pg_database)
    try:
        with engine.begin() as conn:
            conn.execute(text(USERS_TASKS))
            before = catalog.object_names(conn, "public")

        # When jobplane migrates into schema "jp", from the models and through the history
        upgrade(empty_pg_database, schema="jp")
        command.check(alembic_config(empty_pg_database, "jp"))
        command.downgrade(alembic_config(empty_pg_database, "jp"), "base")
        upgrade(empty_pg_database, "0007", schema="jp")
        upgrade(empty_pg_database, schema="jp")
        command.check(alembic_config(empty_pg_database, "jp"))

        # Then every jobplane object, its version table included, is in jp; public is as it was
        with engine.connect() as conn:
            assert catalog.object_names(conn, "public") == before
            in_jp = catalog.object_names(conn, "jp")
            context = MigrationContext.configure(conn, opts=version_table_options("jp"))
            assert context.get_current_revision() == HEAD
    finally:
        engine.dispose()
    assert ("relation", "jobplane_tasks") in in_jp and ("relation", VERSION_TABLE) in in_jp
    assert ("trigger", "jobplane_outbox_notify") in in_jp
    assert ("trigger", "jobplane_tasks_notify_done_on_update") in in_jp
    assert ("function", "jobplane_tasks_notify_done") in in_jp
    assert [name for _, name in in_jp if not name.startswith("jobplane_")] == []
