"""The relay's take past a full queue: what one look costs while that queue holds a backlog.

While a queue's window is full the relay keeps that queue's rows in the outbox and looks
past them, every ``JOBPLANE_RELAY_WINDOW_INTERVAL`` (0.05 s), for the other queues'
rows. On a fresh database it fills the outbox with ``--held`` due rows on queue
``full`` (the backlog held back) and 100 on each of two other queues, then times, in the
same run, on the same rows:

- the take over every queue (no queue full);
- the take past ``full`` as the relay makes it on PostgreSQL (queue by queue, through
  ``jobplane_outbox_queue_priority_id_idx``);
- the same take as one filtered walk of the (priority, id) index (what the relay did
  before, and still does on SQLite), for the ratio.

Each figure is the median of ``--looks`` looks, each in a transaction rolled back (the
locks go with it). See bench/README.md.

    .venv/bin/python bench/outbox_take.py [--held 100000 1000000] [--looks 21]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, create_engine

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import harness as h  # noqa: E402
from jobplane.models import utcnow  # noqa: E402
from jobplane.store import outbox  # noqa: E402

BATCH = 500
FILL = """
INSERT INTO jobplane_outbox (task_id, dispatch, available_at, created_at, type, queue,
                             timeout_seconds, priority)
SELECT md5(%(queue)s || g::text), 1, now() - interval '1 minute', now(), 'demo.noop',
       %(queue)s, 60, %(priority)s
FROM generate_series(1, %(count)s) g
"""


def filtered_take(conn: Connection) -> int:
    """The take past ``full`` as one walk of the (priority, id) index, filtered."""
    statement = outbox._lock_outbox_batch(False, True)
    params = {"b_now": utcnow(), "b_limit": BATCH, "b_skip": ["full"]}
    return len(conn.execute(statement, params).all())


def relay_take(skip: tuple[str, ...]) -> Callable[[Connection], int]:
    def take(conn: Connection) -> int:
        return len(outbox.lock_outbox_batch(conn, utcnow(), BATCH, skip_queues=skip).rows)

    return take


def median_ms(engine: Any, take: Callable[[Connection], int], looks: int) -> tuple[float, int]:
    times, taken = [], 0
    for _ in range(looks):
        with engine.connect() as conn:
            start = time.perf_counter()
            taken = take(conn)
            times.append((time.perf_counter() - start) * 1000)
            conn.rollback()
    return statistics.median(times), taken


def one_size(held: int, looks: int) -> list[str]:
    db = h.ScratchDatabase("jobplane_bench_take")
    try:
        db.migrate(h.base_env(), Path(tempfile.mkdtemp(prefix="jobplane-bench-take-")))
        conn = db.connect()
        conn.execute(FILL, {"queue": "full", "priority": 5, "count": held})  # type: ignore[arg-type]
        for queue, priority in (("other", 0), ("third", 1)):
            conn.execute(FILL, {"queue": queue, "priority": priority, "count": 100})
        conn.execute("VACUUM ANALYZE jobplane_outbox")
        engine = create_engine(db.url)
        try:
            every, _ = median_ms(engine, relay_take(()), looks)
            past, taken = median_ms(engine, relay_take(("full",)), looks)
            filtered, filtered_taken = median_ms(engine, filtered_take, looks)
        finally:
            engine.dispose()
        if taken != filtered_taken:
            raise h.BenchError(f"the two takes differ: {taken} vs {filtered_taken} rows")
        return [
            f"{held:,}",
            f"{every:.2f}",
            f"{past:.2f}",
            f"{filtered:.2f}",
            f"{filtered / past:.0f}x",
        ]
    finally:
        db.drop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--held", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--looks", type=int, default=21)
    args = parser.parse_args()
    print(f"machine: {h.machine()}")
    rows = [one_size(held, args.looks) for held in args.held]
    h.print_table(
        [
            "rows held on 'full'",
            "take, no queue full (ms)",
            "take past 'full' (ms)",
            "filtered walk, before (ms)",
            "before / now",
        ],
        rows,
    )


if __name__ == "__main__":
    main()
