"""The app's own tables (migrated by its own Alembic history, in migrations/)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import String, Text, func
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class Report(Base):
    __tablename__ = "reports"

    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(String(200))
    #: ``queued`` until its job has written the body, then ``done``.
    status: Mapped[str] = mapped_column(String(20), default="queued")
    body: Mapped[str | None] = mapped_column(Text)
    #: The jobplane task that writes the body.
    task_id: Mapped[str | None] = mapped_column(String(36))
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
