"""Filling ``jobplane_tasks`` with a few weeks' worth of realistic rows, by SQL, fast.

``bench/scale.py`` measures the admin reads on what this leaves. The rows look like a
deployment's inside the 7-day retention: ids as the platform makes them (uuid4 text), ten
job types on three queues (``TYPES``), mostly completed with some failed and cancelled,
three schedules' runs with a few skipped (``SCHEDULES``), and a live edge of pending and
running tasks whose workers heartbeat. ``created_at`` grows with the physical order, as
rows arriving over time do.

Each statement is ``INSERT … SELECT … FROM generate_series(…)`` of at most ``chunk`` rows
(statement-level triggers then see bounded transition tables), their pseudo-random
choices drawn from ``hashint8extended(g, seed)``, so two fills of one size hold the same
mix. With ``rebuild_indexes`` the table's indexes and unique constraints are dropped for
the fill and recreated from their own definitions after it, which is faster than
maintaining them row by row; the schema is compared before and after, and must be the
same. Columns are filled by name from what ``jobplane migrate`` made: a column this
module does not know is left to its default, and one without a default is an error.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg

from bench.harness import BenchError

TABLE = "jobplane_tasks"
WORKERS = "jobplane_workers"  #: not on every version of the schema
#: The retention the rows are spread over, in seconds.
SPAN = 7 * 86400.0
#: Rows per INSERT statement. The task-done trigger's cost grows faster than its
#: statement's row count (it slices one array of every finished id, 200 at a time):
#: 1,000,000 rows in one statement took 150 s, in ten of 100,000 10 s.
CHUNK = 100_000
PROGRESS_EVERY = 1_000_000  #: rows between two progress lines
LIVE_PENDING = 3000  #: pending tasks at the live edge (at most 1% of the rows)
LIVE_RUNNING = 64  #: running tasks, on 8 workers (at most 0.1% of the rows)
LIVE_WORKERS = 8


@dataclass(frozen=True)
class TypeMix:
    """A job type, its queue and its share of the table's unscheduled tasks."""

    name: str
    queue: str
    share: float
    priority: int = 0
    timeout: int = 300
    #: Typical run time of one task, in seconds (the fill draws around it).
    seconds: float = 0.5


TYPES = (
    TypeMix("emails.send", "default", 0.30, seconds=0.3),
    TypeMix("webhooks.deliver", "default", 0.20, seconds=0.2),
    TypeMix("reports.build", "bulk", 0.10, timeout=3600, seconds=20.0),
    TypeMix("images.resize", "bulk", 0.10, seconds=2.0),
    TypeMix("orders.fulfil", "critical", 0.08, priority=5, seconds=0.5),
    TypeMix("payments.capture", "critical", 0.07, priority=5, seconds=0.4),
    TypeMix("search.reindex", "bulk", 0.05, timeout=1800, seconds=8.0),
    TypeMix("exports.csv", "bulk", 0.04, timeout=1800, seconds=15.0),
    TypeMix("notifications.push", "default", 0.04, seconds=0.1),
    TypeMix("invoices.render", "critical", 0.02, priority=5, seconds=1.5),
)


@dataclass(frozen=True)
class ScheduleMix:
    """A scheduled job type and its period in seconds (``cron`` fires every ``period``)."""

    name: str
    queue: str
    cron: str
    period: int


SCHEDULES = (
    ScheduleMix("sync.inventory", "default", "* * * * *", 60),
    ScheduleMix("reports.hourly", "bulk", "0 * * * *", 3600),
    ScheduleMix("backups.nightly", "bulk", "0 3 * * *", 86400),
)

ERRORS = (
    "TimeoutError: the upstream did not answer within 30 s",
    "ConnectionResetError: [Errno 104] Connection reset by peer",
    "ValueError: unknown account 'acct-0'",
    "jobplane.TaskTimeout: the attempt ran past its time limit",
)


@dataclass(frozen=True)
class Plan:
    """How many rows of each kind a fill of ``rows`` writes."""

    rows: int
    scheduled: tuple[int, ...]  #: per schedule of ``SCHEDULES``
    pending: int
    running: int

    @property
    def bulk(self) -> int:
        return self.rows - sum(self.scheduled) - self.pending - self.running

    @classmethod
    def of(cls, rows: int) -> Plan:
        # A schedule's runs over the retention, fewer in a small table (1% of it at most).
        scheduled = tuple(min(int(SPAN // s.period), rows // 100) for s in SCHEDULES)
        return cls(rows, scheduled, min(LIVE_PENDING, rows // 100), min(LIVE_RUNNING, rows // 1000))


@dataclass
class FillReport:
    rows: int
    insert_s: float
    index_s: float
    vacuum_s: float
    table_bytes: int
    database_bytes: int

    @property
    def total_s(self) -> float:
        return self.insert_s + self.index_s + self.vacuum_s

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.insert_s if self.insert_s else 0.0


def u(var: str, seed: int) -> str:
    """SQL: a uniform number in [0, 1) drawn from the integer ``var`` and ``seed``."""
    return f"((hashint8extended({var}, {seed}) & 16777215)::float8 / 16777216)"


#: What each column of a task row is made of, from the shapes' fields (``t.…``).
COLUMNS = {
    "id": "gen_random_uuid()::text",
    "type": "t.type",
    "queue": "t.queue",
    "priority": "t.priority",
    "params": "jsonb_build_object('account_id', t.g %% 50000, 'ref', 'r' || t.g)",
    "status": "t.status",
    "progress": "0",
    "total": "0",
    "result": (
        "CASE WHEN t.status = 'completed' THEN jsonb_build_object('ok', true, 'count', t.g %% 97)"
        " END"
    ),
    "error": "t.error",
    "attempts": "t.attempts",
    "retry_count": "t.retry_count",
    "max_retries": "3",
    "timeout_seconds": "t.timeout_seconds",
    "run_after": "t.run_after",
    "dispatch": "1 + t.retry_count",
    "idempotency_key": "t.idem",
    "request_hash": "CASE WHEN t.idem IS NOT NULL THEN md5(t.idem) || md5(t.g::text) END",
    "cancel_requested": "t.status = 'cancelled'",
    "waiting_since": "NULL",
    "heartbeat_at": "t.heartbeat_at",
    "worker": "t.worker",
    "created_at": "t.created_at",
    "started_at": "t.started_at",
    "completed_at": "t.completed_at",
    "cancelled_at": "t.cancelled_at",
    "schedule_name": "t.schedule_name",
    "fire_time": "t.fire_time",
    # Not on every version of the schema: when the task last changed status.
    "updated_at": "greatest(t.created_at, t.started_at, t.completed_at, t.cancelled_at)",
}

#: Per row: a job type (index ``ti`` into the mix's arrays) and the draws of its life.
_DRAWS = f"""
    width_bucket({u("g", 2)}, %(cuts)s::float8[]) + 1 AS ti,
    {u("g", 1)} AS r_status, {u("g", 3)} AS r_wait, {u("g", 4)} AS r_run,
    {u("g", 5)} AS r_retry, {u("g", 6)} AS r_misc"""

_TYPE_FIELDS = """
    (%(types)s::text[])[ti] AS type, (%(queues)s::text[])[ti] AS queue,
    (%(priorities)s::int[])[ti] AS priority, (%(timeouts)s::int[])[ti] AS timeout_seconds"""

#: Finished tasks, oldest first: ``g`` from 1 to ``%(rows)s`` spread over ``%(span)s`` s.
BULK = f"""
SELECT g, {_TYPE_FIELDS}, status,
    CASE WHEN status = 'failed' THEN (%(errors)s::text[])[1 + g %% %(n_errors)s] END AS error,
    created_at, created_at AS run_after,
    CASE WHEN ran THEN began END AS started_at,
    CASE WHEN status <> 'cancelled' THEN began + dur * interval '1 second' END AS completed_at,
    CASE WHEN status = 'cancelled' THEN began + dur * interval '0.5 second' END
        AS cancelled_at,
    CASE WHEN status = 'cancelled' AND ran THEN began
         WHEN ran THEN began + floor(dur / 5) * interval '5 seconds' END AS heartbeat_at,
    CASE WHEN ran THEN
        'w' || (1 + g %% 4) || '.jobs.internal:' || (4000 + 4 * (g * 7 / %(rows)s) + g %% 4)
    END AS worker,
    CASE status WHEN 'failed' THEN 4 WHEN 'cancelled' THEN ran::int ELSE 1 + retries END
        AS attempts,
    CASE status WHEN 'failed' THEN 3 WHEN 'cancelled' THEN 0 ELSE retries END AS retry_count,
    NULL::text AS schedule_name, NULL::timestamptz AS fire_time,
    CASE WHEN r_misc < 0.02 THEN 'order-' || g END AS idem
FROM (
    SELECT *, status <> 'cancelled' OR r_misc >= 0.5 AS ran
    FROM (
        SELECT *,
            CASE WHEN r_status < 0.93 THEN 'completed' WHEN r_status < 0.98 THEN 'failed'
                 ELSE 'cancelled' END AS status,
            created_at + (0.002 + 2.0 * r_wait ^ 6) * interval '1 second' AS began,
            (%(seconds)s::float8[])[ti] * (0.2 + 4 * r_run ^ 3) AS dur,
            CASE WHEN r_retry < 0.03 THEN 1 WHEN r_retry < 0.036 THEN 2 ELSE 0 END AS retries
        FROM (
            SELECT g, {_DRAWS},
                %(ref)s::timestamptz - interval '1 second'
                    * (%(span)s::float8 * (%(rows)s - g + {u("g", 7)}) / %(rows)s) AS created_at
            FROM generate_series(%(lo)s::bigint, %(hi)s::bigint) AS g
        ) AS a
    ) AS b
) AS c
"""

#: The schedules' runs: one per (schedule, fire time), newest at the schedule's anchor.
SCHEDULED = f"""
SELECT g, name AS type, queue, 0 AS priority, 300 AS timeout_seconds, status,
    CASE status WHEN 'skipped' THEN 'missed by 2m (misfire=skip)'
                WHEN 'failed' THEN (%(errors)s::text[])[1 + g %% %(n_errors)s] END AS error,
    created_at, created_at AS run_after,
    CASE WHEN status <> 'skipped' THEN began END AS started_at,
    CASE WHEN status = 'skipped' THEN created_at ELSE began + dur * interval '1 second' END
        AS completed_at,
    NULL::timestamptz AS cancelled_at,
    CASE WHEN status <> 'skipped' THEN began END AS heartbeat_at,
    CASE WHEN status <> 'skipped' THEN 'w' || (1 + g %% 4) || '.jobs.internal:4000' END
        AS worker,
    CASE WHEN status = 'skipped' THEN 0 ELSE 1 END AS attempts, 0 AS retry_count,
    name AS schedule_name, fire_time, NULL::text AS idem
FROM (
    SELECT *,
        CASE WHEN r_status < 0.02 THEN 'skipped' WHEN r_status < 0.03 THEN 'failed'
             ELSE 'completed' END AS status,
        created_at + interval '5 milliseconds' AS began, 0.1 + 5 * r_run AS dur
    FROM (
        SELECT *, {u("g", 1)} AS r_status, {u("g", 4)} AS r_run,
            fire_time + (0.01 + 0.05 * {u("g", 3)}) * interval '1 second' AS created_at
        FROM (
            SELECT k * 8 + si AS g, name, queue,
                anchor - (k - 1) * period * interval '1 second' AS fire_time
            FROM unnest(%(s_names)s::text[], %(s_queues)s::text[], %(s_anchors)s::timestamptz[],
                        %(s_periods)s::int[], %(s_counts)s::int[])
                WITH ORDINALITY AS s(name, queue, anchor, period, n, si)
            CROSS JOIN LATERAL generate_series(1, s.n) AS k
        ) AS a
    ) AS b
) AS c
"""

#: The live edge, as of now(): a backlog of pending tasks and the running ones.
LIVE = f"""
SELECT g, {_TYPE_FIELDS}, status, NULL AS error, created_at,
    created_at + CASE WHEN status = 'pending' AND r_misc < 0.1 THEN interval '10 minutes'
                      ELSE interval '0' END AS run_after,
    CASE WHEN status = 'running' THEN created_at + interval '10 milliseconds' END
        AS started_at,
    NULL::timestamptz AS completed_at, NULL::timestamptz AS cancelled_at,
    CASE WHEN status = 'running' THEN now() - r_wait * interval '5 seconds' END
        AS heartbeat_at,
    CASE WHEN status = 'running' THEN
        'w' || (1 + g %% %(workers)s) || '.jobs.internal:' || (9000 + g %% %(workers)s)
    END AS worker,
    (status = 'running')::int AS attempts, 0 AS retry_count,
    NULL::text AS schedule_name, NULL::timestamptz AS fire_time, NULL::text AS idem
FROM (
    SELECT *,
        CASE WHEN g <= %(pending)s THEN 'pending' ELSE 'running' END AS status,
        now() - CASE WHEN g <= %(pending)s THEN r_run * interval '30 minutes'
                     ELSE interval '5 seconds' + r_run * interval '5 minutes' END AS created_at
    FROM (
        SELECT g, {_DRAWS} FROM generate_series(1, %(pending)s + %(running)s) AS g
    ) AS a
) AS b
"""


def mix_params() -> dict[str, Any]:
    """The parameters every shape reads: the type mix's arrays and the error texts."""
    cuts, total = [], 0.0
    for mix in TYPES[:-1]:
        total += mix.share
        cuts.append(total)
    return {
        "cuts": cuts,
        "types": [m.name for m in TYPES],
        "queues": [m.queue for m in TYPES],
        "priorities": [m.priority for m in TYPES],
        "timeouts": [m.timeout for m in TYPES],
        "seconds": [m.seconds for m in TYPES],
        "errors": list(ERRORS),
        "n_errors": len(ERRORS),
    }


def schedule_params(plan: Plan, ref: datetime) -> dict[str, Any]:
    """Each schedule's newest fire time before ``ref``, its period and its run count."""
    return {
        "s_names": [s.name for s in SCHEDULES],
        "s_queues": [s.queue for s in SCHEDULES],
        "s_anchors": [_last_fire(ref, s.period) for s in SCHEDULES],
        "s_periods": [s.period for s in SCHEDULES],
        "s_counts": list(plan.scheduled),
    }


def _last_fire(ref: datetime, period: int) -> datetime:
    # Every minute, at minute 0 of every hour, at 03:00 every day: the period's boundary
    # (shifted by 3 h for the daily one) at or before ``ref``.
    offset = 3 * 3600 if period == 86400 else 0
    epoch = int(ref.timestamp()) - offset
    return datetime.fromtimestamp(epoch - epoch % period + offset, UTC)


# -- the statements ------------------------------------------------------------------


def insert_sql(conn: psycopg.Connection[Any], shape: str) -> str:
    """``INSERT INTO jobplane_tasks (…) SELECT …`` of ``shape``'s rows, naming the columns
    the table has: an unknown one is left to its default; one without a default stops."""
    rows = conn.execute(
        "SELECT column_name, is_nullable = 'YES' OR column_default IS NOT NULL "
        "FROM information_schema.columns WHERE table_name = %s AND table_schema = "
        "current_schema() ORDER BY ordinal_position",
        (TABLE,),
    ).fetchall()
    missing = [name for name, optional in rows if name not in COLUMNS and not optional]
    if missing:
        raise BenchError(
            f"{TABLE} has columns the fill does not know, without a default: {missing}; "
            "add them to bench/scale_fill.py's COLUMNS"
        )
    names = [name for name, _ in rows if name in COLUMNS]
    values = ", ".join(COLUMNS[name] for name in names)
    return f"INSERT INTO {TABLE} ({', '.join(names)}) SELECT {values} FROM ({shape}) AS t"


@dataclass(frozen=True)
class Schema:
    """What migrate made of the table: its indexes, constraints and triggers."""

    indexes: tuple[tuple[str, str], ...]  #: (name, CREATE INDEX …), constraints' excluded
    #: Names of the indexes on plain columns: the others' definitions are not always read
    #: back as they were made (PostgreSQL folds a partial index's ``IN`` list on the way
    #: in), so the fill keeps them, and maintains them row by row.
    plain: frozenset[str]
    constraints: tuple[tuple[str, str, str], ...]  #: (name, kind, definition)
    triggers: tuple[tuple[str, str, str], ...]  #: (name, enabled, definition)

    @classmethod
    def read(cls, conn: psycopg.Connection[Any]) -> Schema:
        indexes = conn.execute(
            "SELECT c.relname, pg_get_indexdef(i.indexrelid), "
            "i.indexprs IS NULL AND i.indpred IS NULL FROM pg_index i "
            "JOIN pg_class c ON c.oid = i.indexrelid WHERE i.indrelid = %s::regclass "
            "AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid "
            "AND k.conrelid = i.indrelid) ORDER BY 1",
            (TABLE,),
        ).fetchall()
        constraints = conn.execute(
            "SELECT conname, contype::text, pg_get_constraintdef(oid) FROM pg_constraint "
            "WHERE conrelid = %s::regclass ORDER BY 1",
            (TABLE,),
        ).fetchall()
        triggers = conn.execute(
            "SELECT tgname, tgenabled::text, pg_get_triggerdef(oid) FROM pg_trigger "
            "WHERE tgrelid = %s::regclass AND NOT tgisinternal ORDER BY 1",
            (TABLE,),
        ).fetchall()
        plain = frozenset(name for name, _, is_plain in indexes if is_plain)
        return cls(
            tuple((name, d) for name, d, _ in indexes),
            plain,
            tuple(constraints),
            tuple(triggers),
        )

    def plain_indexes(self) -> list[tuple[str, str]]:
        return [(name, d) for name, d in self.indexes if name in self.plain]

    def index_backed_constraints(self) -> list[tuple[str, str]]:
        """(name, definition) of the primary key and unique constraints."""
        return [(name, d) for name, kind, d in self.constraints if kind in ("p", "u")]


def drop_indexes(conn: psycopg.Connection[Any], schema: Schema) -> None:
    referenced = conn.execute(
        "SELECT count(*) FROM pg_constraint WHERE confrelid = %s::regclass", (TABLE,)
    ).fetchone()
    if referenced and referenced[0]:
        raise BenchError(f"a foreign key references {TABLE}: fill with --keep-indexes")
    for name, _ in schema.plain_indexes():
        conn.execute(f'DROP INDEX "{name}"')  # type: ignore[arg-type]
    for name, _ in schema.index_backed_constraints():
        conn.execute(f'ALTER TABLE {TABLE} DROP CONSTRAINT "{name}"')  # type: ignore[arg-type]


def create_indexes(conn: psycopg.Connection[Any], schema: Schema) -> None:
    for _, definition in schema.plain_indexes():
        conn.execute(definition)  # type: ignore[arg-type]
    for name, definition in schema.index_backed_constraints():
        conn.execute(f'ALTER TABLE {TABLE} ADD CONSTRAINT "{name}" {definition}')  # type: ignore[arg-type]


# -- the fill ------------------------------------------------------------------------


def fill(
    conninfo: str, rows: int, *, chunk: int = CHUNK, rebuild_indexes: bool = True, log: Any = print
) -> FillReport:
    """Fill the (migrated, empty) table of ``conninfo`` with ``rows`` tasks, then VACUUM
    ANALYZE it; ``log`` is told of each step."""
    plan = Plan.of(rows)
    ref = datetime.now(UTC)
    params = {**mix_params(), **schedule_params(plan, ref), "ref": ref, "span": SPAN}
    with psycopg.connect(conninfo, autocommit=True, application_name="bench-fill") as conn:
        conn.execute("SET synchronous_commit = off")
        conn.execute("SET maintenance_work_mem = '1GB'")
        schema = Schema.read(conn)
        started = time.monotonic()
        if rebuild_indexes and rows:
            drop_indexes(conn, schema)
        _insert_bulk(conn, plan, params, chunk, log)
        if any(plan.scheduled):
            conn.execute(insert_sql(conn, SCHEDULED), params)  # type: ignore[arg-type]
            _fill_schedule_ledger(conn, ref)
        inserted = time.monotonic()
        if rebuild_indexes and rows:
            rebuilt = len(schema.plain_indexes()) + len(schema.index_backed_constraints())
            log(f"    recreating {rebuilt} indexes")
            create_indexes(conn, schema)
        indexed = time.monotonic()
        if plan.pending or plan.running:
            live = {**params, "pending": plan.pending, "running": plan.running}
            conn.execute(insert_sql(conn, LIVE), {**live, "workers": LIVE_WORKERS})  # type: ignore[arg-type]
        _fill_workers(conn)
        if Schema.read(conn) != schema:
            raise BenchError(f"the fill left {TABLE}'s schema different from what migrate made")
        conn.execute("VACUUM (ANALYZE)")
        conn.execute("CHECKPOINT")  # the measurements do not share the disk with it
        vacuumed = time.monotonic()
        table_bytes, db_bytes = conn.execute(
            "SELECT pg_total_relation_size(%s::regclass), pg_database_size(current_database())",
            (TABLE,),
        ).fetchone() or (0, 0)
    return FillReport(
        rows, inserted - started, indexed - inserted, vacuumed - indexed, table_bytes, db_bytes
    )


def _insert_bulk(
    conn: psycopg.Connection[Any], plan: Plan, params: dict[str, Any], chunk: int, log: Any
) -> None:
    statement = insert_sql(conn, BULK)
    began = time.monotonic()
    for lo in range(1, plan.bulk + 1, chunk):
        hi = min(plan.bulk, lo + chunk - 1)
        conn.execute(statement, {**params, "rows": plan.bulk, "lo": lo, "hi": hi})  # type: ignore[arg-type]
        if hi // PROGRESS_EVERY > (lo - 1) // PROGRESS_EVERY or hi == plan.bulk:
            log(f"    {hi:,} rows in {time.monotonic() - began:.1f} s")


def _fill_schedule_ledger(conn: psycopg.Connection[Any], ref: datetime) -> None:
    """The runs ledger and first-seen times catch-up keeps beside the schedules' tasks."""
    conn.execute(
        "INSERT INTO jobplane_schedule_runs (schedule_name, fire_time, task_id, recorded_at) "
        f"SELECT schedule_name, fire_time, id, created_at FROM {TABLE} "
        "WHERE schedule_name IS NOT NULL"
    )
    conn.execute(
        "INSERT INTO jobplane_schedules (name, first_seen_at) SELECT unnest(%s::text[]), %s",
        ([s.name for s in SCHEDULES], ref - timedelta(seconds=SPAN + 86400)),
    )


def _fill_workers(conn: psycopg.Connection[Any]) -> None:
    """The workers table, where the schema has one: each worker's monitor reports in at
    every heartbeat, and retention forgets the long gone (here: all are kept)."""
    if has_table(conn, WORKERS):
        conn.execute(
            f"INSERT INTO {WORKERS} (name, last_seen_at) SELECT worker, max(heartbeat_at) "
            f"FROM {TABLE} WHERE worker IS NOT NULL GROUP BY worker"
        )


def has_table(conn: psycopg.Connection[Any], name: str) -> bool:
    found = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (name,)).fetchone()
    return bool(found and found[0])


def refresh_heartbeats(conninfo: str) -> None:
    """What the live edge's workers do every few seconds: heartbeat their running tasks
    (and report in, where the schema has a workers table)."""
    with psycopg.connect(conninfo, autocommit=True, application_name="bench-fill") as conn:
        conn.execute(f"UPDATE {TABLE} SET heartbeat_at = now() WHERE status = 'running'")
        if has_table(conn, WORKERS):
            conn.execute(
                f"UPDATE {WORKERS} SET last_seen_at = now() WHERE name IN "
                f"(SELECT worker FROM {TABLE} WHERE status = 'running')"
            )
