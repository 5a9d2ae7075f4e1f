"""End-to-end benchmark: jobplane on PostgreSQL + Redis against plain Dramatiq, same run.

Starts real processes (1 API, 1 relay, 1 worker process x 8 threads) on a fresh
database, then the same workload on raw Dramatiq (``bench/raw_actors.py``) on the same
Redis, and prints each figure with the ratio platform/raw:

* throughput: N ``demo.noop`` jobs over HTTP from 16 clients, first submit -> last
  completed; raw: N enqueues from 16 threads, first enqueue -> last processed;
* submit -> start latency at a steady rate (p50/p95/p99);
* relay: rows/s draining a pre-filled outbox with no worker running.

``--quick`` runs small counts; ``--profile DIR`` records py-spy profiles of the API,
relay and worker during the platform's throughput run (py-spy must be installed; the
figures of a profiled run are lower). See bench/README.md.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import harness as h  # noqa: E402

PLATFORM_REDIS_DB = int(os.environ.get("BENCH_REDIS_DB", "12"))
RAW_REDIS_DB = int(os.environ.get("BENCH_RAW_REDIS_DB", "13"))
NOOP = {"type": "demo.noop"}
#: Threads of a paced (latency) run: enough that a slow answer does not hold the rate back.
PACERS = 16


@dataclass(frozen=True)
class Sizes:
    jobs: int = 10_000  #: throughput run
    clients: int = 16  #: concurrent HTTP clients / enqueue threads
    warmup: int = 200  #: jobs run before each measured run, not counted
    latency_jobs: int = 2_000
    rate: float = 200.0  #: jobs/s of the latency run
    relay_rows: int = 20_000


FULL = Sizes()
QUICK = Sizes(jobs=1_000, warmup=100, latency_jobs=500, relay_rows=2_000)

TARGETS = {
    "throughput_ratio": 0.50,  # platform / raw, higher is better
    "relay_rows_per_s": 5_000.0,
    "latency_p50_ms": 5.0,
    "latency_p99_ms": 25.0,
}


# -- load generators -----------------------------------------------------------------


@dataclass
class Burst:
    first_sent: float  #: epoch seconds of the first request / enqueue
    last_answered: float  #: epoch seconds when the last one returned
    count: int
    errors: list[str]

    @property
    def rate(self) -> float:
        return self.count / max(1e-9, self.last_answered - self.first_sent)


def burst(n: int, threads: int, send: Callable[[], Callable[[int], None]]) -> Burst:
    """Call a per-thread sender ``n`` times in all from ``threads`` threads at once."""
    counter = itertools.count()
    barrier = threading.Barrier(threads + 1)
    firsts: list[float] = []
    errors: list[str] = []
    done = [0]
    lock = threading.Lock()

    def run() -> None:
        sender = send()
        barrier.wait()
        first = time.time()
        with lock:
            firsts.append(first)
        sent = 0
        while (i := next(counter)) < n:
            try:
                sender(i)
                sent += 1
            except Exception as error:  # noqa: BLE001 (reported, the run fails)
                with lock:
                    errors.append(f"{type(error).__name__}: {error}")
                if len(errors) > 20:
                    return
        with lock:
            done[0] += sent

    workers = [threading.Thread(target=run, daemon=True) for _ in range(threads)]
    for worker in workers:
        worker.start()
    barrier.wait()
    for worker in workers:
        worker.join()
    return Burst(min(firsts), time.time(), done[0], errors)


def paced(n: int, rate: float, threads: int, send: Callable[[], Callable[[int], Any]]) -> list[Any]:
    """Call a per-thread sender for items 0..n-1, item i at start + i/rate; results in order."""
    start = time.time() + 0.2
    counter = itertools.count()
    lock = threading.Lock()
    results: list[Any] = [None] * n
    errors: list[str] = []

    def run() -> None:
        sender = send()
        while True:
            with lock:
                i = next(counter)
            if i >= n or errors:
                return
            delay = start + i / rate - time.time()
            if delay > 0:
                time.sleep(delay)
            try:
                results[i] = sender(i)
            except Exception as error:  # noqa: BLE001
                errors.append(f"{type(error).__name__}: {error}")

    workers = [threading.Thread(target=run, daemon=True) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    if errors:
        raise h.BenchError(f"{len(errors)} submission(s) failed, first: {errors[0]}")
    return results


def http_submitter(port: int, body: dict[str, Any]) -> Callable[[], Callable[[int], Any]]:
    """A factory of per-thread senders that POST ``body`` to /api/tasks."""

    def make() -> Callable[[int], Any]:
        client = h.Http(port)

        def send(_i: int) -> Any:
            status, answer = client.post("/api/tasks", body)
            if status != 201:
                raise h.BenchError(f"POST /api/tasks answered {status}: {answer}")
            return answer["taskId"]

        return send

    return make


# -- the platform --------------------------------------------------------------------


class PlatformRun:
    """The platform's three measurements on one database."""

    def __init__(self, procs: h.Procs, db: h.ScratchDatabase, sizes: Sizes) -> None:
        self.procs = procs
        self.db = db
        self.sizes = sizes
        self.platform = h.Platform(procs, db, PLATFORM_REDIS_DB)
        self.api: h.Proc | None = None
        self.relay: h.Proc | None = None
        self.worker: h.Proc | None = None

    def start(self) -> None:
        self.platform.migrate()
        self.api = self.platform.start_api()
        self.relay = self.platform.start_relay()
        self.worker = self.platform.start_worker(processes=1, threads=8)

    @property
    def port(self) -> int:
        assert self.platform.api_port is not None
        return self.platform.api_port

    def check_alive(self) -> None:
        for proc in (self.api, self.relay, self.worker):
            if proc is not None:
                proc.check_alive()

    def groups(self) -> dict[int, str]:
        return {
            proc.pid: name
            for name, proc in (("api", self.api), ("relay", self.relay), ("worker", self.worker))
            if proc is not None
        }

    def wait_completed(
        self, since: float, expected: int, timeout: float, interval: float = 0.1
    ) -> dict[str, Any]:
        """Until ``expected`` tasks created since ``since`` completed; peaks seen meanwhile.

        Each look counts the tasks created since ``since`` (PostgreSQL work that grows
        with them), so long runs look less often; the figures come from the rows'
        timestamps, not from when a look saw them.
        """
        peaks = {"outbox": 0, "pending": 0, "running": 0}
        deadline = time.monotonic() + timeout
        while True:
            self.check_alive()
            counts = self.platform.status_counts(since)
            outbox = self.platform.outbox_count()
            peaks["outbox"] = max(peaks["outbox"], outbox)
            peaks["pending"] = max(peaks["pending"], counts.get("pending", 0))
            peaks["running"] = max(peaks["running"], counts.get("running", 0))
            if counts.get("failed") or counts.get("cancelled"):
                raise h.BenchError(f"tasks failed or were cancelled: {counts}")
            if counts.get("completed", 0) >= expected:
                return peaks
            if time.monotonic() > deadline:
                raise h.BenchError(
                    f"after {timeout:.0f} s only {counts.get('completed', 0)} of {expected} "
                    f"tasks completed: {counts}, outbox {outbox}"
                )
            time.sleep(interval)

    def warm_up(self) -> None:
        since = time.time()
        result = burst(self.sizes.warmup, self.sizes.clients, http_submitter(self.port, NOOP))
        if result.errors:
            raise h.BenchError(f"warm-up submissions failed: {result.errors[0]}")
        self.wait_completed(since, self.sizes.warmup, timeout=120)

    def throughput(
        self,
        profile_dir: Path | None,
        submitter: Callable[[], Callable[[int], Any]] | None = None,
        how: str = "over HTTP",
    ) -> dict[str, Any]:
        """``submitter``: how jobs are submitted (default: POST /api/tasks), said by ``how``."""
        n = self.sizes.jobs
        print(f"platform throughput: {n:,} demo.noop jobs {how}, {self.sizes.clients} clients")
        self.warm_up()
        spies = start_profilers(profile_dir, self) if profile_dir else []
        before = h.cpu_snapshot()
        since = time.time()
        result = burst(n, self.sizes.clients, submitter or http_submitter(self.port, NOOP))
        if result.errors:
            raise h.BenchError(f"{len(result.errors)} submission(s) failed: {result.errors[0]}")
        peaks = self.wait_completed(since, n, timeout=max(120.0, n / 50), interval=0.5)
        after = h.cpu_snapshot()
        stop_profilers(spies)
        last = self.db.scalar(
            "SELECT extract(epoch FROM max(completed_at)) FROM jobplane_tasks "
            "WHERE created_at >= to_timestamp(%s)",
            (since,),
        )
        elapsed = float(last) - result.first_sent
        usage = h.cpu_usage(before, after, self.groups())
        figures = {
            "jobs": n,
            "seconds": elapsed,
            "jobs_per_s": n / elapsed,
            "submit_per_s": result.rate,
            "peak_outbox": peaks["outbox"],
            "peak_pending": peaks["pending"],
            "cpu_ms_per_job": usage.per_item_ms(n),
            "machine_busy": usage.machine_busy,
        }
        print(
            f"  {n / elapsed:,.0f} jobs/s ({n:,} in {elapsed:.2f} s); submissions "
            f"accepted at {result.rate:,.0f}/s; peak outbox {peaks['outbox']:,}, "
            f"peak pending {peaks['pending']:,}"
        )
        print(h.format_cpu(usage, n))
        return figures

    def latency(
        self,
        submitter: Callable[[], Callable[[int], tuple[float, str]]] | None = None,
        how: str = "over HTTP",
    ) -> dict[str, Any]:
        """``submitter``: senders answering (send time, task id); default POST /api/tasks."""
        n, rate = self.sizes.latency_jobs, self.sizes.rate
        print(
            f"platform latency: {n:,} jobs {how} at {rate:.0f}/s "
            f"(after {self.sizes.warmup} unmeasured)"
        )
        submitter = submitter or timed_http_submitter(self.port)
        paced(self.sizes.warmup, rate, PACERS, submitter)
        since = time.time()
        sent = paced(n, rate, PACERS, submitter)
        self.wait_completed(since, n, timeout=120)
        rows = self.db.query(
            "SELECT id, extract(epoch FROM created_at), extract(epoch FROM started_at) "
            "FROM jobplane_tasks WHERE id = ANY(%s)",
            ([task_id for _, task_id in sent],),
        )
        by_id = {task_id: (float(created), float(started)) for task_id, created, started in rows}
        db_ms = [1000 * (started - created) for created, started in by_id.values()]
        client_ms = [1000 * (by_id[task_id][1] - at) for at, task_id in sent]
        achieved = achieved_rate([at for at, _ in sent])
        figures = {
            "jobs": n,
            "rate": rate,
            "achieved_rate": achieved,
            "created_to_started_ms": h.summary(db_ms),
            "client_submit_to_started_ms": h.summary(client_ms),
        }
        print(f"  submitted at {achieved:,.0f}/s (asked for {rate:,.0f}/s)")
        print_latency("  created_at -> started_at", figures["created_to_started_ms"])
        print_latency("  client send -> started_at", figures["client_submit_to_started_ms"])
        return figures

    def relay_drain(self) -> dict[str, Any]:
        rows = self.sizes.relay_rows
        print(f"relay: draining a pre-filled outbox of {rows:,} rows (no worker running)")
        for proc in (self.relay, self.worker):
            if proc is not None:
                self.procs.stop(proc)
        self.relay = self.worker = None
        redis = h.claim_redis_db(PLATFORM_REDIS_DB)
        if self.platform.outbox_count():
            raise h.BenchError("the outbox is not empty before the relay run")
        client = h.Http(self.port)
        batch = {"tasks": [NOOP] * 1000}
        for start in range(0, rows, 1000):
            size = min(1000, rows - start)
            status, answer = client.post("/api/tasks/batch", {"tasks": batch["tasks"][:size]})
            if status != 201:
                raise h.BenchError(f"POST /api/tasks/batch answered {status}: {answer}")
        client.close()
        if (filled := self.platform.outbox_count()) != rows:
            raise h.BenchError(f"expected {rows} outbox rows, found {filled}")
        before = h.cpu_snapshot()
        spawned = time.time()
        # With no worker fetching, the relay's window must hold the whole outbox.
        self.platform.settings["relay_window"] = str(rows)
        self.relay = self.platform.start_relay(wait=False)
        h.wait_for(
            lambda: self.relay.check_alive() or self.platform.outbox_count() == 0,  # type: ignore[union-attr]
            timeout=max(60.0, rows / 500),
            interval=0.01,
            what="the relay to drain the outbox",
        )
        drained = time.time()
        after = h.cpu_snapshot()
        started = relay_start_time(self.relay.log_text())
        published = redis.hlen("dramatiq:default.msgs")
        if published < rows:
            raise h.BenchError(f"only {published} of {rows} messages reached Redis")
        usage = h.cpu_usage(before, after, self.groups())
        figures = {
            "rows": rows,
            "seconds": drained - started,
            "rows_per_s": rows / (drained - started),
            "rows_per_s_from_spawn": rows / (drained - spawned),
            "startup_s": started - spawned,
            "cpu_ms_per_row": usage.per_item_ms(rows),
        }
        print(
            f"  {figures['rows_per_s']:,.0f} rows/s ({rows:,} in {drained - started:.2f} s from "
            f"'relay started'; {figures['rows_per_s_from_spawn']:,.0f} rows/s counting the "
            f"{started - spawned:.2f} s start-up)"
        )
        print(h.format_cpu(usage, rows, "row"))
        return figures


def timed_http_submitter(port: int) -> Callable[[], Callable[[int], tuple[float, str]]]:
    def make() -> Callable[[int], tuple[float, str]]:
        send = http_submitter(port, NOOP)()

        def timed(i: int) -> tuple[float, str]:
            at = time.time()
            return at, send(i)

        return timed

    return make


def achieved_rate(times: list[float]) -> float:
    """Submissions per second actually reached (a slow API holds a paced run back)."""
    return (len(times) - 1) / max(1e-9, max(times) - min(times)) if len(times) > 1 else 0.0


def relay_start_time(log: str) -> float:
    """Epoch seconds of the relay's 'relay started' log line (logging's asctime)."""
    for line in log.splitlines():
        if "relay started" in line:
            stamp = " ".join(line.split()[:2])
            return datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f").timestamp()
    raise h.BenchError("the relay never logged 'relay started'")


# -- profiling (optional) ------------------------------------------------------------


def start_profilers(out: Path, run: PlatformRun) -> list[tuple[str, subprocess.Popen[bytes]]]:
    spy = shutil.which("py-spy", path=str(h.BIN)) or shutil.which("py-spy")
    if spy is None:
        raise h.BenchError("--profile needs py-spy: .venv/bin/pip install py-spy")
    out.mkdir(parents=True, exist_ok=True)
    spies = []
    for name, proc in (("api", run.api), ("relay", run.relay), ("worker", run.worker)):
        assert proc is not None
        argv = [spy, "record", "--format", "raw", "--rate", "100", "--gil", "--full-filenames"]
        argv += ["--pid", str(proc.pid), "-o", str(out / f"{name}.folded")]
        if name == "worker":
            argv.append("--subprocesses")
        log = (out / f"{name}.py-spy.log").open("wb")
        spies.append((name, subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)))
    time.sleep(1.0)  # py-spy attaches
    return spies


def stop_profilers(spies: list[tuple[str, subprocess.Popen[bytes]]]) -> None:
    for _, spy in spies:
        spy.send_signal(signal.SIGINT)
    for _, spy in spies:
        try:
            spy.wait(timeout=30)
        except subprocess.TimeoutExpired:
            spy.kill()


# -- raw Dramatiq --------------------------------------------------------------------


class RawRun:
    """The same workload on plain Dramatiq: a no-op actor, enqueued directly."""

    def __init__(self, procs: h.Procs, sizes: Sizes) -> None:
        self.procs = procs
        self.sizes = sizes
        self.redis = h.redis_client(RAW_REDIS_DB)
        os.environ["BENCH_RAW_REDIS_URL"] = h.redis_url(RAW_REDIS_DB)
        from bench import raw_actors

        self.actors = raw_actors
        self.worker: h.Proc | None = None

    def start(self) -> None:
        env = {
            **h.base_env(),
            "BENCH_RAW_REDIS_URL": h.redis_url(RAW_REDIS_DB),
            "dramatiq_worker_timeout": h.WORKER_TIMEOUT_MS,
        }
        argv = [sys.executable, "-m", "dramatiq", "bench.raw_actors"]
        argv += ["--processes", "1", "--threads", "8"]
        self.worker = self.procs.start("raw-worker", argv, env)
        h.wait_worker_ready(self.worker, 1)

    def stop(self) -> None:
        if self.worker is not None:
            self.procs.stop(self.worker)
            self.worker = None

    def processed(self) -> int:
        return int(self.redis.get(self.actors.COUNT_KEY) or 0)

    def wait_processed(self, expected: int, timeout: float) -> None:
        assert self.worker is not None
        h.wait_for(
            lambda: self.worker.check_alive() or self.processed() >= expected,  # type: ignore[union-attr]
            timeout=timeout,
            interval=0.02,
            what=f"raw Dramatiq to process {expected} messages",
        )

    def enqueuer(self) -> Callable[[int], None]:
        return lambda _i: self.actors.raw_noop.send()

    def throughput(self) -> dict[str, Any]:
        n = self.sizes.jobs
        print(f"raw Dramatiq throughput: {n:,} no-op messages from {self.sizes.clients} threads")
        self.redis.delete(self.actors.COUNT_KEY, self.actors.LAST_KEY)
        burst(self.sizes.warmup, self.sizes.clients, lambda: self.enqueuer())
        self.wait_processed(self.sizes.warmup, timeout=60)
        self.redis.delete(self.actors.COUNT_KEY, self.actors.LAST_KEY)
        before = h.cpu_snapshot()
        result = burst(n, self.sizes.clients, lambda: self.enqueuer())
        if result.errors:
            raise h.BenchError(f"{len(result.errors)} enqueue(s) failed: {result.errors[0]}")
        self.wait_processed(n, timeout=max(120.0, n / 50))
        after = h.cpu_snapshot()
        last = float(self.redis.get(self.actors.LAST_KEY))  # type: ignore[arg-type]
        elapsed = last - result.first_sent
        assert self.worker is not None
        usage = h.cpu_usage(before, after, {self.worker.pid: "raw worker"})
        print(
            f"  {n / elapsed:,.0f} jobs/s ({n:,} in {elapsed:.2f} s); enqueued at "
            f"{result.rate:,.0f}/s"
        )
        print(h.format_cpu(usage, n))
        return {
            "jobs": n,
            "seconds": elapsed,
            "jobs_per_s": n / elapsed,
            "enqueue_per_s": result.rate,
            "cpu_ms_per_job": usage.per_item_ms(n),
            "machine_busy": usage.machine_busy,
        }

    def latency(self) -> dict[str, Any]:
        n, rate = self.sizes.latency_jobs, self.sizes.rate
        print(f"raw Dramatiq latency: {n:,} messages at {rate:.0f}/s (after warm-up)")

        def stamped() -> Callable[[int], float]:
            def send(_i: int) -> float:
                at = time.time()
                self.actors.raw_noop.send(sent=at)
                return at

            return send

        self.redis.delete(self.actors.COUNT_KEY, self.actors.LATENCY_KEY)
        paced(self.sizes.warmup, rate, PACERS, stamped)
        self.wait_processed(self.sizes.warmup, timeout=60)
        self.redis.delete(self.actors.COUNT_KEY, self.actors.LATENCY_KEY)
        sent = paced(n, rate, PACERS, stamped)
        self.wait_processed(n, timeout=120)
        raw = self.redis.lrange(self.actors.LATENCY_KEY, 0, -1)
        ms = [1000 * float(value) for value in raw]  # type: ignore[union-attr]
        achieved = achieved_rate(sent)
        figures = {
            "jobs": n,
            "rate": rate,
            "achieved_rate": achieved,
            "enqueue_to_started_ms": h.summary(ms),
        }
        print(f"  enqueued at {achieved:,.0f}/s (asked for {rate:,.0f}/s)")
        print_latency("  enqueue -> actor start", figures["enqueue_to_started_ms"])
        return figures


# -- output --------------------------------------------------------------------------


def print_latency(label: str, stats: dict[str, float]) -> None:
    print(
        f"{label}: p50 {stats['p50']:.2f} ms, p95 {stats['p95']:.2f} ms, "
        f"p99 {stats['p99']:.2f} ms, max {stats['max']:.1f} ms (n={stats['n']:.0f})"
    )


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def report(results: dict[str, Any]) -> list[str]:
    """The summary table; returns the targets missed."""
    missed: list[str] = []
    rows: list[tuple[str, str, str, str, str]] = []
    plat, raw = results.get("platform", {}), results.get("raw", {})
    if "throughput" in plat and "throughput" in raw:
        p, r = plat["throughput"]["jobs_per_s"], raw["throughput"]["jobs_per_s"]
        ok = p / r >= TARGETS["throughput_ratio"]
        rows.append(
            (
                "throughput (jobs/s)",
                f"{p:,.0f}",
                f"{r:,.0f}",
                f"{p / r:.2f}",
                f">= {TARGETS['throughput_ratio']:.2f} x raw: {verdict(ok)}",
            )
        )
        if not ok:
            missed.append("throughput")
    if "latency" in plat:
        p_lat = plat["latency"]["created_to_started_ms"]
        r_lat = raw.get("latency", {}).get("enqueue_to_started_ms", {})
        for key in ("p50", "p95", "p99"):
            target = TARGETS.get(f"latency_{key}_ms")
            ok = target is None or p_lat[key] <= target
            r_value = r_lat.get(key)
            rows.append(
                (
                    f"latency {key} (ms)",
                    f"{p_lat[key]:.2f}",
                    f"{r_value:.2f}" if r_value is not None else "-",
                    f"{p_lat[key] / r_value:.2f}" if r_value else "-",
                    f"<= {target:g} ms: {verdict(ok)}" if target else "",
                )
            )
            if not ok:
                missed.append(f"latency {key}")
    if "relay" in plat:
        rate = plat["relay"]["rows_per_s"]
        ok = rate >= TARGETS["relay_rows_per_s"]
        rows.append(
            (
                "relay (rows/s)",
                f"{rate:,.0f}",
                "-",
                "-",
                f">= {TARGETS['relay_rows_per_s']:,.0f}: {verdict(ok)}",
            )
        )
        if not ok:
            missed.append("relay")
    h.print_table(("", "platform", "raw", "ratio", "target"), rows)
    return missed


# -- main ----------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small counts: a sanity run")
    parser.add_argument(
        "--only",
        default="throughput,latency,relay",
        help="comma-separated phases: throughput, latency, relay (default: all)",
    )
    parser.add_argument("--jobs", type=int, help="jobs of the throughput run (default 10,000)")
    parser.add_argument("--rate", type=float, help="jobs/s of the latency run (default 200)")
    parser.add_argument("--no-raw", action="store_true", help="skip the raw Dramatiq runs")
    parser.add_argument("--profile", type=Path, help="write py-spy profiles here")
    add_report_options(parser)
    return parser.parse_args(argv)


def sizes_for(args: argparse.Namespace) -> Sizes:
    sizes = QUICK if args.quick else FULL
    if args.jobs:
        sizes = replace(sizes, jobs=args.jobs)
    if args.rate:
        sizes = replace(sizes, rate=args.rate)
    return sizes


def run_phases(
    procs: h.Procs, sizes: Sizes, phases: set[str], args: argparse.Namespace
) -> tuple[dict[str, Any], h.ScratchDatabase]:
    """Raw Dramatiq first (its worker stopped after), then the platform."""
    results: dict[str, Any] = {}
    if not args.no_raw and phases & {"throughput", "latency"}:
        raw = RawRun(procs, sizes)
        raw.start()
        results["raw"] = {}
        if "throughput" in phases:
            results["raw"]["throughput"] = raw.throughput()
        if "latency" in phases:
            results["raw"]["latency"] = raw.latency()
        raw.stop()
    db = h.ScratchDatabase("jobplane_bench")
    run = PlatformRun(procs, db, sizes)
    results["platform"] = {}
    try:
        run.start()
        if "throughput" in phases:
            results["platform"]["throughput"] = run.throughput(args.profile)
        if "latency" in phases:
            results["platform"]["latency"] = run.latency()
        if "relay" in phases:
            results["platform"]["relay"] = run.relay_drain()
    except BaseException:
        procs.close()
        db.drop()
        raise
    return results, db


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sizes = sizes_for(args)
    phases = {phase.strip() for phase in args.only.split(",") if phase.strip()}
    return run_and_report(
        args,
        sizes,
        lambda procs: run_phases(procs, sizes, phases, args),
        report,
        log_prefix="jobplane-bench-",
    )


def add_report_options(parser: argparse.ArgumentParser) -> None:
    """The options ``run_and_report`` reads: --json, --keep-logs, --check."""
    parser.add_argument("--json", type=Path, help="also write the figures as JSON here")
    parser.add_argument("--keep-logs", action="store_true", help="keep the processes' logs")
    parser.add_argument(
        "--check", action="store_true", help="exit 1 if a target is missed (default: report)"
    )


def run_and_report(
    args: argparse.Namespace,
    sizes: Sizes,
    run: Callable[[h.Procs], tuple[dict[str, Any], h.ScratchDatabase | None]],
    report: Callable[[dict[str, Any]], list[str]],
    *,
    log_prefix: str,
    redis_dbs: Sequence[int] = (PLATFORM_REDIS_DB, RAW_REDIS_DB),
) -> int:
    """A bench's frame: the machine's facts, the Redis databases claimed (``redis_dbs``),
    ``run`` (its figures and the scratch database it made), ``report`` (the targets it
    missed), the JSON file, then everything stopped, dropped and flushed, whatever
    happened."""
    h.exit_on_sigterm()
    log_dir = Path(tempfile.mkdtemp(prefix=log_prefix))
    procs = h.Procs(log_dir)
    db: h.ScratchDatabase | None = None
    results: dict[str, Any] = {"machine": h.machine(), "sizes": asdict(sizes)}
    print("machine: " + ", ".join(f"{k} {v}" for k, v in results["machine"].items()))
    print(f"load average before: {h.loadavg()}; logs in {log_dir}")
    failed = True
    claimed: list[Any] = []
    try:
        for index in redis_dbs:
            claimed.append(h.claim_redis_db(index))
        figures, db = run(procs)
        results.update(figures)
        missed = report(results)
        print(f"load average after: {h.loadavg()}")
        if args.json:
            args.json.write_text(json.dumps(results, indent=2, default=str))
        failed = False
        return 1 if args.check and missed else 0
    except h.BenchError as error:
        print(f"\nbench failed: {error}", file=sys.stderr)
        return 1
    finally:
        procs.close()
        if db is not None:
            db.drop()
        for client in claimed:
            client.flushdb()
        if failed or args.keep_logs:
            print(f"process logs kept in {log_dir}", file=sys.stderr)
        else:
            shutil.rmtree(log_dir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
