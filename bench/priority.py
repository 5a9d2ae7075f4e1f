"""Priority in a backlog: how many low-priority tasks start while each urgent one waits.

Real processes (1 API, 1 relay, 1 worker process x 8 threads) on a fresh database: 1,500
``demo.noop`` tasks of priority 0 submitted on one queue (``POST /api/tasks/batch``),
then, once 100 of them have started, 10 of priority 9, the workers running throughout.
For each urgent task it prints how many low-priority tasks started while it waited (by
``started_at``, from its submission to its start; a tie counts), beside the bound the
README states (window + prefetch), and the backlog's throughput (first submission ->
last completion). One run per ``--windows`` entry, each on a database of its own; a
window larger than the backlog is what the relay did before it had one. See
bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import harness as h  # noqa: E402

REDIS_DB = int(os.environ.get("BENCH_PRIORITY_REDIS_DB", "10"))
THREADS = 8
#: Low-priority tasks started before the urgent ones are submitted: a backlog running.
STARTED_FIRST = 100
STARTED = "SELECT count(*) FROM jobplane_tasks WHERE started_at IS NOT NULL"
#: What a Dramatiq worker process prefetches when not told: twice its threads.
DEFAULT_PREFETCH = 2 * THREADS


def submit(client: h.Http, count: int, priority: int) -> None:
    """``count`` demo.noop tasks of ``priority``, 1,000 to a request."""
    for start in range(0, count, 1000):
        body = {"tasks": [{"type": "demo.noop", "priority": priority}] * min(1000, count - start)}
        status, answer = client.post("/api/tasks/batch", body)
        if status != 201:
            raise h.BenchError(f"POST /api/tasks/batch answered {status}: {answer}")


def one_run(
    procs: h.Procs, window: int, low: int, high: int, prefetch: int | None
) -> dict[str, Any]:
    """The backlog on a fresh platform whose relay has ``window``; its figures."""
    redis = h.claim_redis_db(REDIS_DB)
    db = h.ScratchDatabase("jobplane_bench_priority")
    try:
        platform = h.Platform(procs, db, REDIS_DB, settings={"relay_window": str(window)})
        if prefetch is not None:
            platform.extra_env["dramatiq_queue_prefetch"] = str(prefetch)
        platform.migrate()
        platform.start_api()
        platform.start_relay()
        platform.start_worker(processes=1, threads=THREADS)
        assert platform.api_port is not None
        client = h.Http(platform.api_port)
        submit(client, low, 0)
        h.wait_for(
            lambda: db.scalar(STARTED) >= min(low, STARTED_FIRST),
            timeout=60,
            what=f"{STARTED_FIRST} tasks to start",
        )
        submit(client, high, 9)
        client.close()
        h.wait_for(
            lambda: platform.status_counts().get("completed", 0) >= low + high,
            timeout=120,
            what=f"{low + high} tasks to complete",
        )
        return figures(db, window, prefetch or DEFAULT_PREFETCH)
    finally:
        procs.close()
        db.drop()
        redis.flushdb()


def figures(db: h.ScratchDatabase, window: int, prefetch: int) -> dict[str, Any]:
    # Low-priority tasks that started while the urgent one waited: after it was
    # submitted, no later than it started (a tie, in one group-committed claim, counts).
    behind = db.query(
        "SELECT count(low.id) FROM jobplane_tasks AS urgent LEFT JOIN jobplane_tasks AS low"
        " ON low.priority = 0 AND low.started_at >= urgent.created_at"
        " AND low.started_at <= urgent.started_at"
        " WHERE urgent.priority = 9 GROUP BY urgent.id ORDER BY urgent.created_at, urgent.id"
    )
    seconds = db.scalar(
        "SELECT extract(epoch FROM max(completed_at) - min(created_at)) FROM jobplane_tasks"
    )
    total = db.scalar("SELECT count(*) FROM jobplane_tasks")
    counts = [int(row[0]) for row in behind]
    return {
        "window": window,
        "prefetch": prefetch,
        "bound": window + prefetch,
        "low_started_while_each_urgent_waited": counts,
        "seconds": float(seconds),
        "jobs_per_s": total / float(seconds),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--windows", default="100000,500,100", help="relay windows, one run each")
    parser.add_argument("--low", type=int, default=1500, help="priority-0 tasks (default 1,500)")
    parser.add_argument("--high", type=int, default=10, help="priority-9 tasks (default 10)")
    parser.add_argument(
        "--prefetch", type=int, help="dramatiq_queue_prefetch (default: Dramatiq's, 16)"
    )
    parser.add_argument("--json", type=Path, help="also write the figures as JSON here")
    args = parser.parse_args(argv)
    h.exit_on_sigterm()
    log_dir = Path(tempfile.mkdtemp(prefix="jobplane-bench-priority-"))
    procs = h.Procs(log_dir)
    print("machine: " + ", ".join(f"{k} {v}" for k, v in h.machine().items()))
    print(f"load average before: {h.loadavg()}")
    runs = []
    try:
        for window in (int(w) for w in args.windows.split(",")):
            started = time.monotonic()
            run = one_run(procs, window, args.low, args.high, args.prefetch)
            runs.append(run)
            counts = run["low_started_while_each_urgent_waited"]
            print(
                f"window {window:>6,} (bound {run['bound']:,}): low-priority tasks started"
                f" while each urgent one waited: {counts}; max {max(counts):,};"
                f" backlog {run['jobs_per_s']:,.0f} jobs/s"
                f" ({time.monotonic() - started:.0f} s with start-up)"
            )
    except h.BenchError as error:
        print(f"\nbench failed: {error}; process logs kept in {log_dir}", file=sys.stderr)
        return 1
    finally:
        procs.close()
    shutil.rmtree(log_dir, ignore_errors=True)
    print(f"load average after: {h.loadavg()}")
    if args.json:
        args.json.write_text(json.dumps({"runs": runs}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
