"""Building blocks the statements share: bind parameters, unnested arrays, insert-or-ignore."""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    Connection,
    bindparam,
    column,
    func,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.sql.elements import BindParameter
from sqlalchemy.sql.selectable import TableValuedAlias
from sqlalchemy.types import TypeEngine

from jobplane.models import (
    Base,
    UTCDateTime,
)


# The batched forms read their rows from arrays, so that one prepared statement serves
# every batch size: ``UPDATE jobplane_tasks … FROM unnest(ids, dispatches)``. Their status
# guard is written ``(status = …) IS TRUE``, which no index can serve: with statistics
# taken at a quiet moment the planner would otherwise walk every pending task through a
# status index for each batch (seen with a backlog) instead of one primary-key lookup
# per message.
def unnested(name: str, **columns: type[TypeEngine[Any]]) -> TableValuedAlias:
    """``unnest(:b_<name>_<column>, …) AS <name>(<column>, …)``: a row per array element,
    each column's array passed as a bind parameter (of PostgreSQL ARRAY type)."""
    arrays = (bindparam(f"b_{name}_{col}", type_=postgresql.ARRAY(t)) for col, t in columns.items())
    return (
        func.unnest(*arrays)
        .table_valued(*(column(col, t) for col, t in columns.items()))
        .render_derived(name=name)
    )


# The statements on the hot path (a claim and a finish per job) are built once, with
# bind parameters: building a statement costs more CPU than PostgreSQL spends running it.
# (UPDATE reserves a column's own name for its SET value: hence the b_ prefixes.)
TASK_ID: BindParameter[str] = bindparam("b_task_id")


DISPATCH: BindParameter[int] = bindparam("b_dispatch")


NOW = bindparam("b_now", type_=UTCDateTime())


def insert_ignoring_conflict(
    conn: Connection, model: type[Base], columns: list[str]
) -> postgresql.Insert | sqlite.Insert:
    """INSERT … ON CONFLICT (columns) DO NOTHING, in the connection's dialect."""
    if conn.dialect.name == "postgresql":
        return postgresql.insert(model).on_conflict_do_nothing(index_elements=columns)
    return sqlite.insert(model).on_conflict_do_nothing(index_elements=columns)


def compiled_in_schema(statement: Any, dialect: Any, schema: str | None, **kw: Any) -> Any:
    """``statement`` compiled ahead for ``exec_driver_sql``, its tables named in ``schema``.

    Statements SQLAlchemy compiles as they run get the schema from the engine
    (``jobplane.db.in_schema``); SQL compiled ahead must be given it.
    """
    translate = {"schema_translate_map": {None: schema}, "render_schema_translate": True}
    return statement.compile(dialect=dialect, **(translate if schema else {}), **kw)
