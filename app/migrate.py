"""Running Alembic from code: ``jobplane migrate``, ``jobplane dev`` and the tests.

jobplane lives in the user's database, beside the user's own tables and often the
user's own Alembic history: its version is kept in a table of its own
(``jobplane_alembic_version``), optionally in a PostgreSQL schema of its own, and
``upgrade`` reads or writes nothing it did not create.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, MetaData, Table, column, delete, inspect, select, table
from sqlalchemy.schema import CreateSchema

from jobplane.db import make_engine
from jobplane.models import Base
from jobplane.settings import Settings
from jobplane.timeouts import PostgresTimeouts

MIGRATIONS = Path(str(files("jobplane.migrations")))
#: jobplane's version table; Alembic's default name, ``alembic_version``, is the user's.
VERSION_TABLE = "jobplane_alembic_version"
#: Where jobplane kept its version before revision 0008 renamed everything.
LEGACY_VERSION_TABLE = "alembic_version"
#: The revisions jobplane could have left in ``LEGACY_VERSION_TABLE``.
LEGACY_REVISIONS = frozenset({"0001", "0002", "0003", "0004", "0005", "0006", "0007"})
#: Tables every jobplane database had from its first revision to 0008: a row of
#: ``LEGACY_VERSION_TABLE`` is jobplane's only if these are there as well.
LEGACY_TABLES = ("tasks", "outbox", "platform_state")


class LegacyVersionError(RuntimeError):
    """alembic_version holds more than one of jobplane's revisions: which one is true?"""


def alembic_config(url: str, schema: str | None = None, settings: Settings | None = None) -> Config:
    """Alembic's configuration for the database at ``url`` (jobplane's objects in ``schema``);
    ``settings`` give the migration engine its timeouts (``migration_engine``)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("file_template", "%%(year)d_%%(month).2d_%%(day).2d_%%(rev)s_%%(slug)s")
    config.attributes["url"] = url
    config.attributes["schema"] = schema
    config.attributes["settings"] = settings
    return config


def migration_engine(
    url: str, schema: str | None = None, *, settings: Settings | None = None
) -> Engine:
    """An engine for migrations: no statement timeout by default, and on PostgreSQL
    ``schema`` as the search path, so that every migration, its raw SQL included,
    creates and finds jobplane's objects there.

    ``settings``: the connect and keepalive timeouts and ``migrate_statement_timeout``
    (default: their documented defaults, not the environment's)."""
    settings = settings or Settings.model_construct()
    timeouts = PostgresTimeouts.from_settings(settings).for_migrations(settings)
    if schema is None:
        return make_engine(url, timeouts=timeouts)
    return make_engine(url, timeouts=timeouts, connect_args={"options": f"-c search_path={schema}"})


def upgrade(
    url: str, revision: str = "head", *, schema: str | None = None, settings: Settings | None = None
) -> None:
    """Bring the database at ``url`` to ``revision`` (default: the newest).

    A database without jobplane's objects is made from the models at once and stamped
    with the newest revision (Alembic's recipe for a new database): running the
    history would create the tables under their names before 0008 (``tasks``, …),
    which may well be the user's. ``settings``: as for ``migration_engine``.
    """
    config = alembic_config(url, schema, settings)
    engine = migration_engine(url, schema, settings=settings)
    try:
        with engine.begin() as conn:
            if schema is not None:
                conn.execute(CreateSchema(schema, if_not_exists=True))
            adopt_legacy_version(conn, schema)
            context = MigrationContext.configure(conn, opts=version_table_options(schema))
            fresh = context.get_current_revision() is None
            if fresh and revision == "head":
                Base.metadata.create_all(conn)
                context.stamp(ScriptDirectory.from_config(config), "head")
                return
    finally:
        engine.dispose()
    command.upgrade(config, revision)


def version_table_options(schema: str | None) -> dict[str, Any]:
    """Where jobplane's version is: ``context.configure`` options."""
    return {"version_table": VERSION_TABLE, "version_table_schema": schema}


def adopt_legacy_version(conn: Connection, schema: str | None) -> None:
    """Carry a deployment's version from ``alembic_version`` over to jobplane's table.

    Once: a database that has ``jobplane_alembic_version`` is never looked at again.
    ``alembic_version`` counts as jobplane's only if it holds one of jobplane's old
    revisions and jobplane's old tables exist; otherwise it is the user's (at a revision
    such as ``user_0007``) and stays untouched. jobplane's row is deleted from it, and
    the table dropped only if nothing else was in it.
    """
    inspector = inspect(conn)
    if inspector.has_table(VERSION_TABLE, schema=schema):
        return
    if not inspector.has_table(LEGACY_VERSION_TABLE, schema=schema):
        return
    legacy = table(LEGACY_VERSION_TABLE, column("version_num"), schema=schema)
    found = conn.execute(select(legacy.c.version_num)).scalars().all()
    ours = [revision for revision in found if revision in LEGACY_REVISIONS]
    if not ours or not all(inspector.has_table(name, schema=schema) for name in LEGACY_TABLES):
        return
    if len(ours) > 1:
        raise LegacyVersionError(f"{LEGACY_VERSION_TABLE} holds revisions {ours}")
    context = MigrationContext.configure(conn, opts=version_table_options(schema))
    script = ScriptDirectory(str(MIGRATIONS))
    context.stamp(script, ours[0])
    conn.execute(delete(legacy).where(legacy.c.version_num == ours[0]))
    if len(found) == 1:
        Table(LEGACY_VERSION_TABLE, MetaData(), schema=schema).drop(conn)
