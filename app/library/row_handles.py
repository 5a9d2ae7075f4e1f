"""``RowHandle``: what a handle on one of jobplane's rows (a task, a workflow) has in
common: its id now, an engine, the row as last read."""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Generic, Protocol, TypeVar

from sqlalchemy import Connection, Engine

from jobplane.db import jobplane_schema
from jobplane.library import engine as library_engine


class _HasStatus(Protocol):
    @property
    def status(self) -> str: ...


RowT = TypeVar("RowT", bound=_HasStatus)


class RowHandle(Generic[RowT]):
    """A row, read on demand: ``.id`` now; the first use reads the row, ``refresh()``
    reads it again.

    ``engine``: the database the row is in (default: ``JOBPLANE_DATABASE_URL``'s,
    ``jobplane.library.engine.default_engine``). A handle may be shared between threads.
    """

    def __init__(self, row_id: str, *, engine: Engine | None = None) -> None:
        self.id = row_id
        self._engine = engine
        self._row: RowT | None = None

    def __repr__(self) -> str:
        status = "not read" if self._row is None else self._row.status
        return f"<{type(self).__name__} {self.id} ({status})>"

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            self._engine = library_engine.default_engine()
        return self._engine

    def _fetch(self, conn: Connection) -> RowT | None:
        """The row, read on ``conn`` (None: there is none)."""
        raise NotImplementedError

    def _missing(self) -> Exception:
        """What reading a row that does not exist raises."""
        raise NotImplementedError

    @staticmethod
    def _in_schema(conn: Connection) -> AbstractContextManager[Connection]:
        # A handle may be given the application's own engine, without jobplane's schema.
        return jobplane_schema(conn, library_engine.library_settings().db_schema)

    def _last_read(self) -> RowT:
        return self._row if self._row is not None else self._read()

    def _read(self) -> RowT:
        with self.engine.connect() as conn, self._in_schema(conn):
            row = self._fetch(conn)
        if row is None:
            raise self._missing()
        self._row = row
        return row
