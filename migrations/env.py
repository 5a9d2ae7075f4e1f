"""Alembic environment: metadata from the models, URL and schema from jobplane's settings.

``jobplane migrate`` (and the tests) pass them in ``config.attributes`` (see
``jobplane.migrate.alembic_config``); plain ``alembic`` falls back to
``JOBPLANE_DATABASE_URL`` and ``JOBPLANE_DB_SCHEMA``. The version is kept in
``jobplane_alembic_version``, and autogenerate (``alembic check``) compares only
jobplane's own tables: the user's, in the same database, are not jobplane's to drop.
"""

from __future__ import annotations

from typing import Any

from alembic import context

from jobplane.migrate import VERSION_TABLE, migration_engine
from jobplane.models import NOT_COMPARED, ONLY_ON, PREFIX, Base
from jobplane.settings import Settings, get_settings

config = context.config
settings: Settings | None = config.attributes.get("settings")
if "url" in config.attributes:
    url, schema = config.attributes["url"], config.attributes.get("schema")
else:  # plain alembic: this module is its entry point, so it reads the environment
    settings = get_settings()
    url, schema = settings.database_url, settings.db_schema


def include_name(name: str | None, type_: str, _parent_names: Any) -> bool:
    """Whether autogenerate looks at a reflected object: jobplane's tables only."""
    if type_ == "table":
        return name is not None and name.startswith(PREFIX) and name != VERSION_TABLE
    return True


def include_object_on(dialect_name: str) -> Any:
    """Autogenerate's filter of the models' objects: those made only on another
    database (``ONLY_ON``) are not expected on this one."""

    def include_object(
        item: Any, _name: str | None, _type: str, reflected: bool, _compare_to: Any
    ) -> bool:
        if _type == "index" and _name in NOT_COMPARED:
            return False
        only_on = None if reflected else getattr(item, "info", {}).get(ONLY_ON)
        return only_on is None or only_on == dialect_name

    return include_object


def run_migrations_offline() -> None:
    context.configure(
        url=url,
        target_metadata=Base.metadata,
        literal_binds=True,
        include_name=include_name,
        version_table=VERSION_TABLE,
        version_table_schema=schema,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    # A migration may rewrite a large table: it gets its own statement timeout (default:
    # none), but the same connect timeout and keepalives as every other connection.
    engine = migration_engine(url, schema, settings=settings)
    try:
        with engine.connect() as connection:
            context.configure(
                connection=connection,
                target_metadata=Base.metadata,
                render_as_batch=connection.dialect.name == "sqlite",
                include_name=include_name,
                include_object=include_object_on(connection.dialect.name),
                version_table=VERSION_TABLE,
                version_table_schema=schema,
            )
            with context.begin_transaction():
                context.run_migrations()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
