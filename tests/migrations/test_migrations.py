"""The schema comes from the migrations, on PostgreSQL and SQLite alike."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
from alembic import command
from alembic.util.exc import CommandError
from sqlalchemy import insert, inspect, select

from jobplane import service
from jobplane.db import make_engine
from jobplane.migrate import alembic_config, upgrade
from jobplane.models import ScheduleRun, Task
from jobplane.service import Submission
from jobplane.settings import Settings
from tests import services

FIRE = datetime(2026, 11, 30, 21, 0, tzinfo=UTC)


@pytest.fixture(params=["postgresql", "sqlite"])
def empty_database(request: pytest.FixtureRequest, tmp_path: Path, postgres: None) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'm.db'}"
    name = f"jobplane_migrations_{id(request)}"
    services.admin_execute(f'DROP DATABASE IF EXISTS "{name}"')
    services.admin_execute(f'CREATE DATABASE "{name}"')
    request.addfinalizer(lambda: services.admin_execute(f'DROP DATABASE "{name}" WITH (FORCE)'))
    return services.pg_url(name)


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


def test_the_runs_ledger_is_filled_from_the_scheduled_runs_kept_and_goes_on_downgrade(
    empty_database: str,
) -> None:
    # Given a database before the ledger with a scheduled run, a run started by hand
    # (no fire time) and an ordinary task
    config = alembic_config(empty_database)
    upgrade(empty_database, "0006")
    engine = make_engine(empty_database)
    try:
        now = datetime.now(UTC)
        rows = [service.build_task(Submission(type="demo.noop"), Settings(), now) for _ in "abc"]
        rows[0] = replace(rows[0], schedule_name="nightly", fire_time=FIRE)
        rows[1] = replace(rows[1], schedule_name="nightly")
        with engine.begin() as conn:
            conn.execute(insert(Task), [row.columns() for row in rows])

        # When it is upgraded, downgraded and upgraded again
        upgrade(empty_database)
        with engine.connect() as conn:
            first = conn.execute(select(ScheduleRun)).all()
        command.downgrade(config, "0006")
        with engine.connect() as conn:
            tables = inspect(conn).get_table_names()
            tasks = conn.execute(select(Task.id)).scalars().all()
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
