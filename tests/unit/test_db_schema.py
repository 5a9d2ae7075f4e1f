"""JOBPLANE_DB_SCHEMA: which names it takes, where it applies, and SQLite's refusal."""

from __future__ import annotations

import pytest
from pydantic import ValidationError
from sqlalchemy import select

from jobplane.db import make_engine, schema_of
from jobplane.models import Task
from jobplane.settings import Settings

PG = "postgresql+psycopg://postgres@127.0.0.1:5432/nowhere"


def test_a_schema_is_refused_with_sqlite_when_the_settings_are_read() -> None:
    with pytest.raises(ValidationError, match="JOBPLANE_DB_SCHEMA is for PostgreSQL"):
        Settings(database_url="sqlite:///./x.db", db_schema="jobs")
    with pytest.raises(ValueError, match="SQLite has none"):
        make_engine("sqlite://", schema="jobs")


@pytest.mark.parametrize("name", ["Jobs", "jobs-here", "1jobs", "a" * 64, 'x"; DROP'])
def test_a_schema_name_is_a_plain_lowercase_sql_name(name: str) -> None:
    with pytest.raises(ValidationError, match="lowercase letters, digits and _"):
        Settings(database_url=PG, db_schema=name)


def test_an_empty_schema_is_none_and_a_schema_names_every_table() -> None:
    assert Settings(database_url=PG, db_schema="").db_schema is None
    engine = make_engine(PG, schema="jobs_here")
    try:
        compiled = select(Task.id).compile(
            dialect=engine.dialect,
            schema_translate_map=engine.get_execution_options()["schema_translate_map"],
            render_schema_translate=True,
        )
        assert (schema_of(engine), schema_of(make_engine(PG))) == ("jobs_here", None)
        assert "FROM jobs_here.jobplane_tasks" in str(compiled)
    finally:
        engine.dispose()
