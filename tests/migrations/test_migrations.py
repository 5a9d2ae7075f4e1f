"""The schema comes from the migrations, on PostgreSQL and SQLite alike."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic import command
from alembic.util.exc import CommandError

from app.migrate import alembic_config, upgrade
from tests import services


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
