"""What a database holds, read from its catalog: for "unchanged" and "the same as" checks."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, inspect, text

#: Every named object of a PostgreSQL schema: relations (tables, indexes, sequences,
#: views), constraints, triggers and functions.
PG_OBJECTS = """
SELECT 'relation', c.relname FROM pg_class c
  JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = :schema
UNION ALL SELECT 'constraint', k.conname FROM pg_constraint k
  JOIN pg_namespace n ON n.oid = k.connamespace WHERE n.nspname = :schema
UNION ALL SELECT 'trigger', t.tgname FROM pg_trigger t
  JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace
  WHERE n.nspname = :schema AND NOT t.tgisinternal
UNION ALL SELECT 'function', p.proname FROM pg_proc p
  JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = :schema
"""
PG_SEQUENCES = "SELECT sequencename FROM pg_sequences WHERE schemaname = :schema"
PG_TRIGGERS = """
SELECT t.tgname, pg_get_triggerdef(t.oid) FROM pg_trigger t
  JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace
  WHERE n.nspname = :schema AND NOT t.tgisinternal
"""
PG_FUNCTIONS = """
SELECT p.proname, p.prosrc FROM pg_proc p
  JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = :schema
"""
#: One table as PostgreSQL describes it: columns in order with types and defaults, then
#: constraints, indexes and triggers with their definitions.
PG_TABLE = """
SELECT 'column', format('%s %s %s %s %s', ordinal_position, column_name, data_type,
                        is_nullable, column_default)
  FROM information_schema.columns WHERE table_schema = :schema AND table_name = :table
UNION ALL SELECT 'constraint', k.conname || ' ' || pg_get_constraintdef(k.oid)
  FROM pg_constraint k WHERE k.conrelid = to_regclass(:qualified)
UNION ALL SELECT 'index', indexname || ' ' || indexdef
  FROM pg_indexes WHERE schemaname = :schema AND tablename = :table
UNION ALL SELECT 'trigger', pg_get_triggerdef(t.oid)
  FROM pg_trigger t WHERE t.tgrelid = to_regclass(:qualified) AND NOT t.tgisinternal
ORDER BY 1, 2
"""


def described(conn: Connection, schema: str | None = None) -> dict[str, Any]:
    """Every table of ``schema`` with its columns, keys and indexes (column order aside),
    and on PostgreSQL the schema's sequences, triggers and functions: what two routes to
    the same schema must agree on."""
    inspector = inspect(conn)
    tables = {name: _table(inspector, name, schema) for name in inspector.get_table_names(schema)}
    if conn.dialect.name != "postgresql":
        return {"tables": tables}
    params = {"schema": schema or "public"}
    return {
        "tables": tables,
        "sequences": sorted(conn.execute(text(PG_SEQUENCES), params).scalars()),
        "triggers": sorted(tuple(row) for row in conn.execute(text(PG_TRIGGERS), params)),
        "functions": sorted(
            (name, " ".join(source.split()))
            for name, source in conn.execute(text(PG_FUNCTIONS), params)
        ),
    }


def _table(inspector: Any, name: str, schema: str | None) -> dict[str, Any]:
    return {
        "columns": sorted(
            (c["name"], str(c["type"]), c["nullable"], str(c.get("default")))
            for c in inspector.get_columns(name, schema)
        ),
        "pk": inspector.get_pk_constraint(name, schema),
        "unique": sorted(
            (u["name"], tuple(u["column_names"]))
            for u in inspector.get_unique_constraints(name, schema)
        ),
        "indexes": sorted(
            (i["name"], tuple(i["column_names"]), i["unique"], _options(i))
            for i in inspector.get_indexes(name, schema)
        ),
    }


def _options(index: dict[str, Any]) -> str:
    """An index's dialect options (a partial index's predicate) as text."""
    return repr({key: str(value) for key, value in index.get("dialect_options", {}).items()})


def object_names(conn: Connection, schema: str | None = None) -> list[tuple[str, str]]:
    """(kind, name) of every named object in ``schema`` (SQLite: of the database)."""
    if conn.dialect.name == "postgresql":
        return sorted(tuple(row) for row in conn.execute(text(PG_OBJECTS), {"schema": schema}))
    inspector = inspect(conn)
    names = [
        (kind, name)
        for kind, name in conn.execute(text("SELECT type, name FROM sqlite_master"))
        if not name.startswith("sqlite_")  # SQLite's own: sqlite_autoindex_<table>_1
    ]
    for table in inspector.get_table_names():
        names.append(("constraint", inspector.get_pk_constraint(table)["name"]))
        names += [("constraint", u["name"]) for u in inspector.get_unique_constraints(table)]
    return sorted(names)


def pg_table(conn: Connection, table: str, schema: str = "public") -> dict[str, Any]:
    """A PostgreSQL table, exactly: its definition and every row as PostgreSQL prints it."""
    qualified = f'"{schema}"."{table}"'
    definition = conn.execute(
        text(PG_TABLE), {"schema": schema, "table": table, "qualified": qualified}
    ).all()
    rows = conn.execute(text(f"SELECT t::text FROM {qualified} t ORDER BY 1")).scalars().all()
    return {"definition": [tuple(row) for row in definition], "rows": rows}
