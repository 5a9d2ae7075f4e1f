"""Admin reads at scale: what the dashboard and /metrics cost at 0, 1 M and 10 M tasks.

For each size, a database of its own, migrated by ``jobplane migrate`` and filled by SQL
(``bench/scale_fill.py``: ten job types on three queues, mostly finished over the 7-day
retention, a live edge of pending and running tasks), then a real ``jobplane api`` on it
(token set, memory:// broker: no worker runs) and, over HTTP:

* each admin read, warm-up first, then ``--requests`` requests (fewer when they take
  longer than ``--budget`` s in all): p50 / p95 / max in ms;
* one open dashboard: PostgreSQL's CPU, as a share of one core, while the live stream
  (``GET /api/admin/events``) is open for ``--window`` s, minus an idle window of the
  same length; then the same with the page's own refreshes beside the stream (its first
  loads, the task list every 15 s, the schedules every 10 s), as ``app/static`` does.
  Also the API process's own CPU.

The targets are printed beside the figures, judged at the largest size on p95. See
bench/README.md ("Admin reads at scale").
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import harness as h  # noqa: E402
from bench import scale_fill  # noqa: E402
from bench.e2e import add_report_options, run_and_report  # noqa: E402

TOKEN = "bench-scale-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
SETTINGS = {"api_token": TOKEN, "jobs": "bench.scale_jobs"}
#: The dashboard's page size, and how often its page reloads the list and the
#: schedules whatever the stream says (``app/static/js/tasks.js``, ``session.js``).
PAGE_SIZE = 25
LIST_REFRESH_S = 15.0
SCHEDULES_REFRESH_S = 10.0
MIN_REQUESTS = 3  #: measured requests of a read, however slow

#: p95 targets in ms (issue: at 10 M rows), and one open dashboard's share of a core.
READ_TARGETS_MS = {
    "stats": 20.0,
    "metrics": 20.0,
    "list": 50.0,
    "failed": 50.0,
    "type": 50.0,
    "queue": 50.0,
    "search": 50.0,
}
DASHBOARD_TARGET = 0.02


@dataclass(frozen=True)
class Sizes:
    rows: tuple[int, ...] = (0, 1_000_000, 10_000_000)
    requests: int = 20  #: measured requests per read
    warmup: int = 3  #: unmeasured requests before them
    budget: float = 20.0  #: seconds per read, at most (but ``MIN_REQUESTS``)
    window: float = 30.0  #: seconds of each dashboard window
    chunk: int = scale_fill.CHUNK
    rebuild_indexes: bool = True


FULL = Sizes()
QUICK = Sizes(rows=(0, 20_000, 100_000), requests=10, warmup=2, budget=5.0, window=5.0)


# -- reads ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Read:
    key: str
    label: str
    path: str


def reads(task_id: str) -> list[Read]:
    """The admin reads measured; ``task_id`` names a task of the table (or none)."""
    first = TYPES_MEASURED[0]
    tasks = f"/api/admin/tasks?pageSize={PAGE_SIZE}"
    return [
        Read("stats", "GET /api/admin/stats", "/api/admin/stats"),
        Read("metrics", "GET /metrics", "/metrics"),
        Read("list", "task list, first page", tasks),
        Read("failed", "?status=failed", f"{tasks}&status=failed"),
        Read("type", f"?type={first.name}", f"{tasks}&type={first.name}"),
        Read("queue", f"?queue={first.queue}", f"{tasks}&queue={first.queue}"),
        Read("search", f"?search={task_id[:8]}", f"{tasks}&search={task_id[:8]}"),
        Read("task", "GET /api/admin/tasks/{id}", f"/api/admin/tasks/{task_id}"),
    ]


#: The filtered lists read the most common type and its queue: the largest counts.
TYPES_MEASURED = sorted(scale_fill.TYPES, key=lambda mix: -mix.share)


@dataclass
class Timing:
    ms: list[float] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    answer: str = ""  #: what a list answered: its total (and whether estimated)

    def stats(self) -> dict[str, float]:
        return h.summary(self.ms)


def time_read(client: h.Http, path: str, sizes: Sizes) -> Timing:
    """Warm-up, then up to ``sizes.requests`` timed GETs of ``path`` in ``sizes.budget`` s."""
    timing = Timing()
    began = time.monotonic()
    for _ in range(sizes.warmup):
        client.get(path)
        if time.monotonic() - began > sizes.budget / 4:
            break
    began = time.monotonic()
    body = b""
    while len(timing.ms) < sizes.requests:
        sent = time.perf_counter()
        status, body = client.get(path)
        timing.ms.append(1000 * (time.perf_counter() - sent))
        timing.statuses[status] += 1
        if len(timing.ms) >= MIN_REQUESTS and time.monotonic() - began > sizes.budget:
            break
    timing.answer = list_answer(body) if "/tasks?" in path else ""
    return timing


def list_answer(body: bytes) -> str:
    try:
        page = json.loads(body)
        total = f"total {page['total']:,}"
    except (ValueError, KeyError, TypeError):
        return ""
    return total + (" (estimate)" if page.get("totalIsEstimate") else "")


def sample_task(db: h.ScratchDatabase) -> str:
    """A finished task from the middle of the retention (a random id when there is none)."""
    found = db.scalar(
        "SELECT id FROM jobplane_tasks WHERE created_at <= now() - interval '3.5 days' "
        "ORDER BY created_at DESC LIMIT 1"
    )
    return str(found) if found else str(uuid.uuid4())


# -- one open dashboard ----------------------------------------------------------------


@dataclass(frozen=True)
class Window:
    """PostgreSQL's and the API's CPU over one window, and the stream's events."""

    usage: h.BackendUsage
    api_cpu: float
    events: Counter[str]
    requests: int  #: the page's own requests beside the stream

    def figures(self) -> dict[str, Any]:
        return {
            **asdict(self.usage),
            "api_cpu": self.api_cpu,
            "events": dict(self.events),
            "requests": self.requests,
        }


def read_stream(port: int, seconds: float) -> Counter[str]:
    """Open the live stream for ``seconds`` (the server ends it) and count its events."""
    events: Counter[str] = Counter()
    url = f"http://127.0.0.1:{port}/api/admin/events?maxSeconds={seconds:g}"
    timeout = httpx.Timeout(10.0, read=max(120.0, 4 * seconds))
    with httpx.Client(headers=AUTH, timeout=timeout) as client:
        with client.stream("GET", url) as response:
            if response.status_code != 200:
                raise h.BenchError(f"the live stream answered {response.status_code}")
            for line in response.iter_lines():
                if line.startswith("event: "):
                    events[line.removeprefix("event: ")] += 1
    return events


def page_refreshes(port: int, stop: threading.Event, task_list: str) -> int:
    """What the dashboard page sends beside the stream until ``stop``: its first loads,
    then the task list and the schedules at their intervals. Returns the request count."""
    client = h.Http(port, headers=AUTH)
    schedules = "/api/admin/schedules"
    for path in ("/api/admin/stats", "/api/admin/job-types", task_list, schedules):
        client.get(path)
    sent, began = 4, time.monotonic()
    every = {task_list: LIST_REFRESH_S, schedules: SCHEDULES_REFRESH_S}
    next_at = dict(every)
    while not stop.wait(0.1):
        elapsed = time.monotonic() - began
        for path, at in list(next_at.items()):
            if elapsed >= at:
                client.get(path)
                sent += 1
                next_at[path] = at + every[path]
    client.close()
    return sent


class Dashboard:
    """One open dashboard on the API at ``port``: its cost over windows of ``seconds``."""

    def __init__(self, db: h.ScratchDatabase, api: h.Proc, port: int, seconds: float):
        self.cpu = h.BackendCpu(db, "api")
        self.api, self.port, self.seconds = api, port, seconds

    def idle(self) -> Window:
        def nothing() -> Counter[str]:
            time.sleep(self.seconds)
            return Counter()

        return self._window(nothing)

    def stream(self) -> Window:
        return self._window(lambda: read_stream(self.port, self.seconds))

    def page(self) -> Window:
        """The stream and the page's refreshes together."""
        stop = threading.Event()
        sent: list[int] = []
        task_list = f"/api/admin/tasks?page=1&pageSize={PAGE_SIZE}"
        poller = threading.Thread(
            target=lambda: sent.append(page_refreshes(self.port, stop, task_list)), daemon=True
        )

        def body() -> Counter[str]:
            poller.start()
            try:
                return read_stream(self.port, self.seconds)
            finally:
                stop.set()
                poller.join()

        window = self._window(body)
        return replace(window, requests=sent[0] if sent else 0)

    def _window(self, body: Callable[[], Counter[str]]) -> Window:
        api_before = self._api_cpu()
        events, usage = self.cpu.measure(body)
        return Window(usage, self._api_cpu() - api_before, events, 0)

    def _api_cpu(self) -> float:
        stat = h.proc_stat(self.api.pid)
        return stat.cpu if stat else 0.0


def dashboard_share(window: Window, idle: Window) -> float:
    """The API's PostgreSQL CPU in ``window`` as a share of a core, less the idle one's."""
    return window.usage.share(window.usage.application) - idle.usage.share(idle.usage.application)


# -- one size ------------------------------------------------------------------------


def measure_size(procs: h.Procs, rows: int, sizes: Sizes, *, keep: bool) -> dict[str, Any]:
    """Fill a database of its own with ``rows`` tasks and measure the API on it."""
    db = h.ScratchDatabase("jobplane_bench_scale")
    try:
        # No Redis db: nothing is published, and the API's broker is memory://.
        platform = h.Platform(
            procs, db, 0, app_names=True, broker_url="memory://", settings=SETTINGS
        )
        platform.migrate()
        print(f"\n{rows:,} rows: filling {db.name} (load average {h.loadavg()})")
        filled = scale_fill.fill(
            db.conninfo, rows, chunk=sizes.chunk, rebuild_indexes=sizes.rebuild_indexes
        )
        fold_task_counts(platform)
        api = platform.start_api()
        assert platform.api_port is not None
        scale_fill.refresh_heartbeats(db.conninfo)
        load_reads = h.loadavg()
        client = h.Http(platform.api_port, headers=AUTH)
        timings = [(read, time_read(client, read.path, sizes)) for read in reads(sample_task(db))]
        client.close()
        scale_fill.refresh_heartbeats(db.conninfo)
        load_windows = h.loadavg()
        dashboard = Dashboard(db, api, platform.api_port, sizes.window)
        windows = {"idle": dashboard.idle(), "stream": dashboard.stream()}
        windows["page"] = dashboard.page()
        procs.stop(api)
    finally:
        if keep:
            print(f"  kept database {db.name}")
        else:
            db.drop()
    figures = size_figures(filled, timings, windows, (load_reads, load_windows))
    print_size(figures)
    return figures


def fold_task_counts(platform: h.Platform) -> None:
    """Fold the counts the fill's triggers appended, where the schema keeps them, as the
    maintenance leader would have done meanwhile (``bench/scale_fold.py``)."""
    if not platform.db.scalar("SELECT to_regclass('jobplane_task_counts') IS NOT NULL"):
        return
    done = subprocess.run(
        [sys.executable, "-m", "bench.scale_fold"],
        env=platform.env("fold"),
        cwd=h.ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if done.returncode:
        raise h.BenchError(f"folding the task counts failed:\n{done.stdout}{done.stderr}")
    print(f"  {done.stdout.strip()}")


def size_figures(
    filled: scale_fill.FillReport,
    timings: list[tuple[Read, Timing]],
    windows: dict[str, Window],
    loads: tuple[str, str],
) -> dict[str, Any]:
    idle = windows["idle"]
    return {
        "rows": filled.rows,
        "fill": {**asdict(filled), "total_s": filled.total_s, "rows_per_s": filled.rows_per_s},
        "reads": {
            read.key: {
                "label": read.label,
                **timing.stats(),
                "statuses": dict(timing.statuses),
                "answer": timing.answer,
            }
            for read, timing in timings
        },
        "windows": {name: window.figures() for name, window in windows.items()},
        "dashboard": {name: dashboard_share(windows[name], idle) for name in ("stream", "page")},
        "load_average": {"reads": loads[0], "windows": loads[1]},
    }


# -- output --------------------------------------------------------------------------


def pct(share: float) -> str:
    return f"{100 * share:.1f}%"


def ms(value: float) -> str:
    return f"{value:,.1f}" if value < 100 else f"{value:,.0f}"


def print_size(figures: dict[str, Any]) -> None:
    fill = figures["fill"]
    print(
        f"  filled in {fill['total_s']:.1f} s: insert {fill['insert_s']:.1f} s "
        f"({fill['rows_per_s']:,.0f} rows/s), indexes {fill['index_s']:.1f} s, VACUUM "
        f"ANALYZE {fill['vacuum_s']:.1f} s; table {fill['table_bytes'] / 2**30:.2f} GiB, "
        f"database {fill['database_bytes'] / 2**30:.2f} GiB"
    )
    print(
        f"  load average: {figures['load_average']['reads']} before the reads, "
        f"{figures['load_average']['windows']} before the dashboard windows"
    )
    rows = []
    for read in figures["reads"].values():
        others = {code: n for code, n in read["statuses"].items() if code != 200}
        answer = read["answer"] + "".join(f" HTTP {code} x{n}" for code, n in others.items())
        rows.append(
            (
                read["label"],
                ms(read["p50"]),
                ms(read["p95"]),
                ms(read["max"]),
                f"{read['n']:.0f}",
                answer.strip(),
            )
        )
    h.print_table(("read", "p50 ms", "p95 ms", "max ms", "n", "answer"), rows)
    print_windows(figures)


def print_windows(figures: dict[str, Any]) -> None:
    rows = []
    names = {"idle": "idle (no stream)", "stream": "live stream", "page": "stream + page refreshes"}
    for name, window in figures["windows"].items():
        wall = window["wall"]
        rows.append(
            (
                f"{names[name]}, {wall:.0f} s",
                pct((window["own"] + window["parallel"]) / wall),
                f"{pct(window['parallel'] / wall)} ({window['parallel_workers']})",
                pct(window["server"] / wall),
                pct(window["api_cpu"] / wall),
                str(window["events"].get("stats", 0)),
            )
        )
    h.print_table(
        (
            "window",
            "PG: the API's",
            "of it parallel (n)",
            "PG: whole server",
            "API process",
            "stats events",
        ),
        rows,
    )
    shares = figures["dashboard"]
    print(
        f"  one open dashboard, PostgreSQL for the API less idle: stream {pct(shares['stream'])}"
        f", stream + page {pct(shares['page'])} of a core"
    )


def report(results: dict[str, Any]) -> list[str]:
    """Every figure at every size beside its target; the targets missed at the largest."""
    runs = results.get("runs", [])
    if not runs:
        return []
    largest = runs[-1]
    missed: list[str] = []
    rows = []
    for key, read in largest["reads"].items():
        target = READ_TARGETS_MS.get(key)
        cells = [f"{ms(run['reads'][key]['p50'])} / {ms(run['reads'][key]['p95'])}" for run in runs]
        verdict = ""
        if target is not None:
            ok = read["p95"] <= target
            verdict = f"<= {target:g} ms: {'met' if ok else 'MISSED'}"
            if not ok:
                missed.append(read["label"])
        rows.append((f"{read['label']} p50 / p95 ms", *cells, verdict))
    for name, label in (("stream", "live stream alone"), ("page", "one open dashboard")):
        share = largest["dashboard"][name]
        verdict = ""
        if name == "page":
            ok = share <= DASHBOARD_TARGET
            verdict = f"<= {pct(DASHBOARD_TARGET)} of a core: {'met' if ok else 'MISSED'}"
            if not ok:
                missed.append(label)
        cells = [pct(run["dashboard"][name]) for run in runs]
        rows.append((f"{label}, PostgreSQL (API's, less idle)", *cells, verdict))
    api_cells = [
        pct(run["windows"]["page"]["api_cpu"] / run["windows"]["page"]["wall"]) for run in runs
    ]
    rows.append(("one open dashboard, API process", *api_cells, ""))
    fill_cells = [
        f"{run['fill']['total_s']:.0f} s, {run['fill']['database_bytes'] / 2**30:.2f} GiB"
        for run in runs
    ]
    rows.append(("fill time, database size", *fill_cells, ""))
    header = ("", *(f"{run['rows']:,} rows" for run in runs), f"target (at {largest['rows']:,})")
    h.print_table(header, rows)
    return missed


# -- main ----------------------------------------------------------------------------


def parse_sizes(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(float(part)) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of row counts: {text!r}") from None


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="sizes 0,20000,100000, 5 s windows")
    parser.add_argument("--sizes", type=parse_sizes, help="row counts, e.g. 0,1e6,1e7 (default)")
    parser.add_argument("--requests", type=int, help="measured requests per read (default 20)")
    parser.add_argument("--budget", type=float, help="seconds per read at most (default 20)")
    parser.add_argument("--window", type=float, help="seconds of each dashboard window (30)")
    parser.add_argument("--chunk", type=int, help=f"rows per INSERT (default {scale_fill.CHUNK:,})")
    parser.add_argument(
        "--keep-indexes", action="store_true", help="fill with the indexes in place (slower)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the filled databases")
    add_report_options(parser)
    return parser.parse_args(argv)


def sizes_for(args: argparse.Namespace) -> Sizes:
    sizes = QUICK if args.quick else FULL
    chosen = {
        "rows": args.sizes,
        "requests": args.requests,
        "budget": args.budget,
        "window": args.window,
        "chunk": args.chunk,
    }
    sizes = replace(sizes, **{name: value for name, value in chosen.items() if value is not None})
    return replace(sizes, rebuild_indexes=not args.keep_indexes)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sizes = sizes_for(args)

    def run(procs: h.Procs) -> tuple[dict[str, Any], None]:
        runs = [measure_size(procs, rows, sizes, keep=args.keep) for rows in sizes.rows]
        return {"runs": runs}, None

    return run_and_report(
        args, sizes, run, report, log_prefix="jobplane-bench-scale-", redis_dbs=()
    )


if __name__ == "__main__":
    sys.exit(main())
