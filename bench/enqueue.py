"""Enqueueing from application code, end to end, beside raw Dramatiq and the HTTP path.

The same processes as ``bench/e2e.py`` (1 API, 1 relay, 1 worker process x 8 threads on
a fresh database, raw Dramatiq on the same Redis), and the same workloads, submitted
three ways in one run:

* throughput: N ``demo.noop`` jobs, first submit -> last completed, from 16 threads:
  over HTTP (``POST /api/tasks``), and from code, each job ``jobplane.enqueue``d in an
  application transaction of its own (a SQLAlchemy Session on a plain engine, committed);
  raw: N ``send()`` of a no-op actor;
* submit -> start latency from code at a steady 200 jobs/s (p50/p95/p99);
* ``enqueue_many``: tasks/s written by one transaction of many tasks (relay and worker
  stopped, so they take no CPU from it).

``--quick`` runs small counts. See bench/README.md.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import Engine, create_engine  # noqa: E402
from sqlalchemy.orm import Session  # noqa: E402

import jobplane  # noqa: E402
from bench import harness as h  # noqa: E402
from bench.e2e import (  # noqa: E402
    PlatformRun,
    RawRun,
    Sizes,
    add_report_options,
    run_and_report,
    sizes_for,
    verdict,
)
from jobplane.registry import load_jobs  # noqa: E402

TARGETS = {
    "code_vs_raw": 0.7,  # throughput from code / raw Dramatiq's, higher is better
    "enqueue_many_per_s": 20_000.0,
    "code_latency_p99_ms": 25.0,
}
#: Tasks per ``enqueue_many`` call, and the calls measured (the median is reported).
MANY = 20_000
MANY_QUICK = 5_000
MANY_ROUNDS = 3


def code_submitter(engine: Engine) -> Callable[[], Callable[[int], tuple[float, str]]]:
    """Per-thread senders that enqueue one job in an application transaction of its own;
    each answers (send time, task id)."""

    def make() -> Callable[[int], tuple[float, str]]:
        def send(_i: int) -> tuple[float, str]:
            at = time.time()
            with Session(engine) as session, session.begin():
                task_id = jobplane.enqueue(session, "demo.noop")
            return at, task_id

        return send

    return make


def enqueue_many_rate(run: PlatformRun, engine: Engine, count: int) -> dict[str, Any]:
    """Tasks/s of ``enqueue_many`` in one committed transaction, relay and worker stopped."""
    print(f"enqueue_many: {MANY_ROUNDS} transactions of {count:,} tasks (no relay, no worker)")
    for proc in (run.relay, run.worker):
        if proc is not None:
            run.procs.stop(proc)
    run.relay = run.worker = None
    rates = []
    for _ in range(MANY_ROUNDS):
        tasks = [jobplane.NewTask("demo.echo", {"n": n}) for n in range(count)]
        start = time.perf_counter()
        with Session(engine) as session, session.begin():
            jobplane.enqueue_many(session, tasks)
        rates.append(count / (time.perf_counter() - start))
    print("  " + ", ".join(f"{rate:,.0f}" for rate in rates) + " tasks/s")
    return {"tasks": count, "rounds": rates, "tasks_per_s": statistics.median(rates)}


def run_all(procs: h.Procs, sizes: Sizes, args: argparse.Namespace) -> tuple[dict[str, Any], Any]:
    """Raw Dramatiq first (its worker stopped after), then the platform: HTTP, then code."""
    results: dict[str, Any] = {}
    if not args.no_raw:
        raw = RawRun(procs, sizes)
        raw.start()
        results["raw"] = {"throughput": raw.throughput(), "latency": raw.latency()}
        raw.stop()
    db = h.ScratchDatabase("jobplane_bench")
    run = PlatformRun(procs, db, sizes)
    engine = create_engine(db.url, pool_size=sizes.clients)  # the application's own
    try:
        run.start()
        results["http"] = {"throughput": run.throughput(None)}
        how = "enqueued from code, one application transaction each"
        results["code"] = {
            "throughput": run.throughput(None, code_submitter(engine), how=how),
            "latency": run.latency(code_submitter(engine), how="enqueued from code"),
        }
        many = MANY_QUICK if args.quick else MANY
        results["code"]["enqueue_many"] = enqueue_many_rate(run, engine, many)
    except BaseException:
        procs.close()
        db.drop()
        raise
    finally:
        engine.dispose()
    return results, db


def report(results: dict[str, Any]) -> list[str]:
    """The summary table; returns the targets missed."""
    missed: list[str] = []
    raw, http, code = results.get("raw", {}), results["http"], results["code"]
    code_rate = code["throughput"]["jobs_per_s"]
    http_rate = http["throughput"]["jobs_per_s"]
    rows = [("throughput (jobs/s)", "code", f"{code_rate:,.0f}", "", "")]
    rows.append(("", "HTTP", f"{http_rate:,.0f}", f"code/HTTP {code_rate / http_rate:.2f}", ""))
    if "throughput" in raw:
        raw_rate = raw["throughput"]["jobs_per_s"]
        ok = code_rate / raw_rate >= TARGETS["code_vs_raw"]
        rows.append(
            (
                "",
                "raw Dramatiq",
                f"{raw_rate:,.0f}",
                f"code/raw {code_rate / raw_rate:.2f}, HTTP/raw {http_rate / raw_rate:.2f}",
                f"code >= {TARGETS['code_vs_raw']:.2f} x raw: {verdict(ok)}",
            )
        )
        if not ok:
            missed.append("throughput from code")
    latency = code["latency"]["created_to_started_ms"]
    raw_latency = raw.get("latency", {}).get("enqueue_to_started_ms", {})
    for key in ("p50", "p95", "p99"):
        target = TARGETS["code_latency_p99_ms"] if key == "p99" else None
        ok = target is None or latency[key] <= target
        raw_value = raw_latency.get(key)
        rows.append(
            (
                f"submit->start {key} (ms)" if key == "p50" else key,
                "code",
                f"{latency[key]:.2f}",
                f"raw {raw_value:.2f}" if raw_value is not None else "",
                f"<= {target:g} ms: {verdict(ok)}" if target else "",
            )
        )
        if not ok:
            missed.append(f"latency {key}")
    many = code["enqueue_many"]["tasks_per_s"]
    ok = many >= TARGETS["enqueue_many_per_s"]
    rows.append(
        (
            "enqueue_many (tasks/s)",
            "code",
            f"{many:,.0f}",
            "",
            f">= {TARGETS['enqueue_many_per_s']:,.0f}: {verdict(ok)}",
        )
    )
    if not ok:
        missed.append("enqueue_many")
    h.print_table(("", "path", "figure", "ratio", "target"), rows)
    return missed


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small counts: a sanity run")
    parser.add_argument("--jobs", type=int, help="jobs of each throughput run (default 10,000)")
    parser.add_argument("--rate", type=float, help="jobs/s of the latency run (default 200)")
    parser.add_argument("--no-raw", action="store_true", help="skip the raw Dramatiq runs")
    add_report_options(parser)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sizes = sizes_for(args)
    load_jobs(demo_jobs=True)  # the bench enqueues demo.* from code, checked as the API checks
    return run_and_report(
        args,
        sizes,
        lambda procs: run_all(procs, sizes, args),
        report,
        log_prefix="jobplane-bench-enqueue-",
    )


if __name__ == "__main__":
    os.environ.pop("JOBPLANE_DB_SCHEMA", None)  # the scratch database has jobplane in public
    sys.exit(main())
