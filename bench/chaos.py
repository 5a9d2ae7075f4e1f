"""Crash/recovery loop: SIGKILL workers and the relay again and again; no job may be lost.

With an API, a relay and two worker processes running on a fresh database, submits
2,000 ``demo.sleep`` jobs (0.05 s each), then every 3 s for 60 s SIGKILLs a random
worker's process group and the relay and starts them again (and, once, half-way,
FLUSHDBs Redis: the broker loses every message). Then it waits until every task is
terminal, prints the counts by status and the attempts histogram, and exits 1 if a
task failed or is still not done at the deadline (lost).

    .venv/bin/python bench/chaos.py [--jobs 2000] [--duration 60] [--interval 3]
                                    [--no-flush] [--seed N]

Recovery settings (fast, as in the tests): heartbeat every 0.5 s, stale after 3 s,
sweeper every 0.5 s. A worker killed with prefetched, unacked messages leaves them
in Redis until Dramatiq's own maintenance requeues them (a 60 s heartbeat timeout,
checked at random), so the tail of a run can take a minute or two: the deadline
allows for it.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import harness as h  # noqa: E402

REDIS_DB = int(os.environ.get("BENCH_CHAOS_REDIS_DB", "11"))
SETTINGS = {
    "heartbeat_interval": "0.5",
    "heartbeat_timeout": "3",
    "sweep_interval": "0.5",
}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--sleep", type=float, default=0.05, help="seconds each job sleeps")
    parser.add_argument("--workers", type=int, default=2, help="worker processes (groups)")
    parser.add_argument("--threads", type=int, default=2, help="threads per worker")
    parser.add_argument("--duration", type=float, default=60, help="seconds of killing")
    parser.add_argument("--interval", type=float, default=3, help="seconds between kills")
    parser.add_argument("--no-flush", action="store_true", help="never FLUSHDB Redis")
    parser.add_argument("--deadline", type=float, default=300, help="seconds to finish after")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--keep-logs", action="store_true")
    return parser.parse_args()


def submit(platform: h.Platform, jobs: int, seconds: float) -> None:
    client = h.Http(platform.api_port or 0)
    body = {"type": "demo.sleep", "params": {"seconds": seconds}}
    for start in range(0, jobs, 1000):
        size = min(1000, jobs - start)
        status, answer = client.post("/api/tasks/batch", {"tasks": [body] * size})
        if status != 201:
            raise h.BenchError(f"POST /api/tasks/batch answered {status}: {answer}")
    client.close()


def progress(platform: h.Platform, started: float) -> str:
    counts = platform.status_counts()
    order = ("pending", "running", "completed", "failed", "cancelled")
    parts = [f"{status} {counts[status]}" for status in order if counts.get(status)]
    return f"  t+{time.time() - started:5.1f}s  " + ", ".join(parts)


def chaos(platform: h.Platform, args: argparse.Namespace, rng: random.Random) -> Counter[str]:
    """Kill and restart workers and the relay until ``args.duration`` has passed."""
    procs = platform.procs
    relay = platform.start_relay()
    workers = [platform.start_worker(1, args.threads) for _ in range(args.workers)]
    done: Counter[str] = Counter()
    started = time.time()
    flush_at = started + args.duration / 2 if not args.no_flush else None
    next_kill = started + args.interval
    while time.time() < started + args.duration:
        time.sleep(max(0.0, next_kill - time.time()))
        next_kill += args.interval
        victim = rng.randrange(len(workers))
        procs.kill(workers[victim])
        procs.kill(relay)
        done["worker SIGKILLs"] += 1
        done["relay SIGKILLs"] += 1
        if flush_at is not None and time.time() >= flush_at:
            h.redis_client(platform.redis_db).flushdb()
            done["Redis FLUSHDBs"] += 1
            flush_at = None
            print("  FLUSHDB: the broker lost every message")
        relay = platform.start_relay(wait=False)
        workers[victim] = platform.start_worker(1, args.threads, wait=False)
        print(progress(platform, started) + f"  (killed worker {victim} and the relay)")
    return done


def wait_terminal(platform: h.Platform, jobs: int, deadline: float) -> float:
    started = time.time()
    last_report = started
    while time.time() < started + deadline:
        counts = platform.status_counts()
        if (
            counts.get("completed", 0) + counts.get("failed", 0) + counts.get("cancelled", 0)
            >= jobs
        ):
            return time.time() - started
        for proc in platform.procs.running:
            proc.check_alive()
        if time.time() - last_report >= 10:
            print(progress(platform, started))
            last_report = time.time()
        time.sleep(0.5)
    return -1.0


def report(platform: h.Platform, jobs: int) -> bool:
    counts = platform.status_counts()
    attempts = platform.db.query("SELECT attempts, count(*) FROM tasks GROUP BY 1 ORDER BY 1")
    retries = platform.db.query("SELECT retry_count, count(*) FROM tasks GROUP BY 1 ORDER BY 1")
    errors = platform.db.query(
        "SELECT left(error, 60), count(*) FROM tasks WHERE error IS NOT NULL "
        "GROUP BY 1 ORDER BY 2 DESC LIMIT 5"
    )
    print("tasks by status: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    print("attempts (body starts) histogram: " + ", ".join(f"{a}: {n}" for a, n in attempts))
    print("retry_count histogram: " + ", ".join(f"{r}: {n}" for r, n in retries))
    for error, count in errors:
        print(f"  last error on {count} task(s): {error}")
    completed = counts.get("completed", 0)
    total = sum(counts.values())
    lost = jobs - total + sum(counts.get(s, 0) for s in ("pending", "running"))
    ok = completed == jobs and total == jobs
    print(
        f"{'OK' if ok else 'FAILED'}: {completed} of {jobs} completed, "
        f"{counts.get('failed', 0)} failed, {lost} not done (lost)"
    )
    return ok


def main() -> int:
    args = parse_args()
    rng = random.Random(args.seed)
    h.exit_on_sigterm()
    signal.signal(signal.SIGINT, signal.default_int_handler)
    log_dir = Path(tempfile.mkdtemp(prefix="jobplane-chaos-"))
    procs = h.Procs(log_dir)
    db: h.ScratchDatabase | None = None
    redis = h.redis_client(REDIS_DB)
    ok = False
    try:
        h.claim_redis_db(REDIS_DB)
        db = h.ScratchDatabase("jobplane_chaos")
        platform = h.Platform(procs, db, REDIS_DB, settings=SETTINGS)
        platform.migrate()
        platform.start_api()
        print(
            f"chaos: {args.jobs} demo.sleep({args.sleep}) jobs; {args.workers} workers x "
            f"{args.threads} threads; SIGKILL a worker and the relay every {args.interval:g} s "
            f"for {args.duration:g} s{'' if args.no_flush else '; FLUSHDB Redis once'}"
        )
        submit(platform, args.jobs, args.sleep)
        kills = chaos(platform, args, rng)
        print("chaos over: " + ", ".join(f"{n} {what}" for what, n in kills.items()))
        print("waiting for every task to finish (workers and relay left running)")
        took = wait_terminal(platform, args.jobs, args.deadline)
        if took < 0:
            print(f"not every task finished within {args.deadline:g} s")
        else:
            print(f"every task terminal {took:.1f} s after the last kill")
        ok = report(platform, args.jobs)
        return 0 if ok else 1
    except h.BenchError as error:
        print(f"chaos run failed: {error}", file=sys.stderr)
        return 1
    finally:
        procs.close()
        if db is not None:
            db.drop()
        redis.flushdb()
        if not ok or args.keep_logs:
            print(f"process logs kept in {log_dir}", file=sys.stderr)
        else:
            shutil.rmtree(log_dir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
