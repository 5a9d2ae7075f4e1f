"""Alembic's environment for the app's tables, on the app's engine."""

from __future__ import annotations

from logging.config import fileConfig
from typing import Any

from alembic import context

from app.db import engine
from app.models import Base

if context.config.config_file_name is not None:
    fileConfig(context.config.config_file_name)


def include_name(name: str | None, type_: str, _parent_names: Any) -> bool:
    """Autogenerate compares the app's tables only: jobplane's (``jobplane_*``) share the
    database but are migrated by ``jobplane migrate``, never dropped from here."""
    return type_ != "table" or not (name or "").startswith("jobplane_")


with engine.connect() as connection:
    context.configure(
        connection=connection, target_metadata=Base.metadata, include_name=include_name
    )
    with context.begin_transaction():
        context.run_migrations()
