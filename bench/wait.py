"""Long-poll latency: a task's completion commit -> the answer of ``GET /api/tasks/{id}?wait=``.

Starts a real ``jobplane api`` on a fresh PostgreSQL database (no relay, no worker: the
bench finishes the tasks itself, with the UPDATE a worker's completion makes), then:

* single: ``--rounds`` times, one request waits for one running task, which is then
  completed; latency = from just before the completing COMMIT to the answer's arrival;
* batch: ``--batches`` times, ``--batch-size`` requests wait at once for as many tasks,
  completed together in one statement (as the worker's group commit does).

Prints p50/p95/p99/max in milliseconds. See bench/README.md.
"""

from __future__ import annotations

import argparse
import http.client
import json
import shutil
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import harness as h  # noqa: E402

#: Seconds each request may wait: far longer than any completion takes here.
WAIT = 30
#: Seconds a request is given to reach its wait before its task completes.
SETTLE = 0.05
INSERT_RUNNING = """
INSERT INTO jobplane_tasks (id, type, queue, priority, params, status, progress, total,
  attempts, retry_count, max_retries, timeout_seconds, run_after, dispatch,
  cancel_requested, created_at, started_at)
SELECT id, 'demo.noop', 'default', 0, '{}', 'running', 0, 0, 1, 0, 0, 60, now(), 1,
  false, now(), now() FROM unnest(%s::text[]) AS id
"""
COMPLETE = """
UPDATE jobplane_tasks SET status = 'completed', completed_at = now(), result = '1'
WHERE id = ANY(%s) AND status = 'running'
"""


def get_waiting(port: int, task_id: str, answers: dict[str, float], bodies: list[Any]) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=WAIT + 10)
    conn.request("GET", f"/api/tasks/{task_id}?wait={WAIT}")
    response = conn.getresponse()
    body = response.read()
    answers[task_id] = time.perf_counter()
    bodies.append(json.loads(body))
    conn.close()


def one_round(db: h.ScratchDatabase, port: int, count: int) -> list[float]:
    """``count`` requests wait for ``count`` running tasks, completed in one statement;
    each answer's latency (s) after the moment the COMMIT was sent."""
    ids = [str(uuid.uuid4()) for _ in range(count)]
    db.connect().execute(INSERT_RUNNING, (ids,))
    answers: dict[str, float] = {}
    bodies: list[Any] = []
    threads = [
        threading.Thread(target=get_waiting, args=(port, task_id, answers, bodies))
        for task_id in ids
    ]
    for thread in threads:
        thread.start()
    time.sleep(SETTLE * max(1, count // 20))  # the requests reach their wait
    if answers:
        raise h.BenchError("a request answered before its task completed")
    conn = db.connect()
    with conn.transaction():
        conn.execute(COMPLETE, (ids,))
        committed = time.perf_counter()  # COMMIT is sent as the block ends
    for thread in threads:
        thread.join(WAIT + 10)
    if len(answers) != count or {body["status"] for body in bodies} != {"completed"}:
        raise h.BenchError(f"{len(answers)} of {count} answered, statuses {bodies[:3]}")
    return [answers[task_id] - committed for task_id in ids]


def report(name: str, latencies: list[float]) -> dict[str, float]:
    stats = h.summary(latency * 1000 for latency in latencies)
    print(
        f"{name}: n={stats['n']:.0f}  p50 {stats['p50']:.1f} ms  p95 {stats['p95']:.1f} ms  "
        f"p99 {stats['p99']:.1f} ms  max {stats['max']:.1f} ms"
    )
    return stats


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=200, help="single waits (default 200)")
    parser.add_argument("--batches", type=int, default=10, help="batch rounds (default 10)")
    parser.add_argument("--batch-size", type=int, default=100, help="waits per batch (100)")
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args(argv)
    h.exit_on_sigterm()
    log_dir = Path(tempfile.mkdtemp(prefix="jobplane-bench-wait-"))
    procs = h.Procs(log_dir)
    db = h.ScratchDatabase("jobplane_bench_wait")
    ok = False
    try:
        platform = h.Platform(procs, db, redis_db=12)
        platform.migrate()
        platform.start_api()
        port = platform.api_port
        assert port is not None
        print(f"machine: {h.machine()}; load average before: {h.loadavg()}")
        one_round(db, port, 1)  # warm-up: opens the API's listening connection
        single = [one_round(db, port, 1)[0] for _ in range(args.rounds)]
        batch = [x for _ in range(args.batches) for x in one_round(db, port, args.batch_size)]
        figures = {
            "single": report("single wait  (commit -> answer)", single),
            "batch": report(f"{args.batch_size} waits at once (commit -> answer)", batch),
        }
        print(f"load average after: {h.loadavg()}")
        if args.json:
            args.json.write_text(json.dumps(figures, indent=2))
        ok = True
        return 0
    finally:
        procs.close()
        db.drop()
        if ok:
            shutil.rmtree(log_dir, ignore_errors=True)
        else:
            print(f"process logs kept in {log_dir}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
