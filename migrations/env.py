"""Alembic environment: metadata from the models, URL from jobplane's settings.

``jobplane migrate`` (and the tests) pass a URL in ``config.attributes["url"]``;
plain ``alembic`` falls back to ``JOBPLANE_DATABASE_URL``.
"""

from __future__ import annotations

from alembic import context

from jobplane.db import make_engine
from jobplane.models import Base
from jobplane.settings import get_settings
from jobplane.timeouts import PostgresTimeouts

config = context.config
url = config.attributes.get("url") or get_settings().database_url


def run_migrations_offline() -> None:
    context.configure(url=url, target_metadata=Base.metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    # A migration may rewrite a large table: it gets its own statement timeout (default:
    # none), but the same connect timeout and keepalives as every other connection.
    settings = get_settings()
    timeouts = PostgresTimeouts.from_settings(settings).for_migrations(settings)
    engine = make_engine(url, timeouts=timeouts)
    try:
        with engine.connect() as connection:
            context.configure(
                connection=connection,
                target_metadata=Base.metadata,
                render_as_batch=connection.dialect.name == "sqlite",
            )
            with context.begin_transaction():
                context.run_migrations()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
