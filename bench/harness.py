"""What the benchmark scripts share: real processes, a scratch database, Redis, CPU accounting.

Nothing here imports jobplane: the scripts drive the platform from outside, as an
operator would, through its CLI, its HTTP API and the database it writes.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import psycopg
import redis

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
JOBPLANE = str(BIN / "jobplane")

PG_ADMIN_URL = os.environ.get("BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_HOST = os.environ.get("BENCH_REDIS_HOST", "127.0.0.1")
REDIS_PORT = int(os.environ.get("BENCH_REDIS_PORT", "6379"))

T = TypeVar("T")


class BenchError(RuntimeError):
    """A run could not be completed (a process died, a deadline passed)."""


def wait_for(condition: Callable[[], T], *, timeout: float, what: str, interval: float = 0.05) -> T:
    """Poll ``condition`` until it returns something truthy; BenchError after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise BenchError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def exit_on_sigterm() -> None:
    """Turn SIGTERM into SystemExit, so ``finally`` blocks clean up as on Ctrl-C."""

    def handler(signum: int, _frame: Any) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, handler)


# -- processes -----------------------------------------------------------------------


class Proc:
    """One process (and its children) in a session of its own, output to a log file."""

    def __init__(self, name: str, argv: Sequence[str], env: dict[str, str], log_dir: Path):
        self.name = name
        self.argv = list(argv)
        self.log_path = log_dir / f"{name}.log"
        self._log = self.log_path.open("ab")
        self.started = time.time()
        self.popen = subprocess.Popen(
            self.argv,
            env=env,
            cwd=ROOT,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # its own process group: a signal reaches its children
        )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def check_alive(self) -> None:
        if not self.alive():
            raise BenchError(
                f"{self.name} exited with {self.popen.returncode}; last lines of "
                f"{self.log_path}:\n{self.tail()}"
            )

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def tail(self, lines: int = 20) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def signal_group(self, signum: int) -> None:
        try:
            os.killpg(self.popen.pid, signum)
        except ProcessLookupError:
            pass

    def kill(self) -> None:
        """SIGKILL the whole process group and reap the leader."""
        self.signal_group(signal.SIGKILL)
        try:
            self.popen.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM the group, then SIGKILL whatever is left after ``timeout`` s."""
        if self.alive():
            self.signal_group(signal.SIGTERM)
            try:
                self.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                pass
        self.kill()  # stragglers in the group (Dramatiq's worker children)
        self.close_log()

    def close_log(self) -> None:
        if not self._log.closed:
            self._log.close()


class Procs:
    """Every process a run started; ``close()`` ends them all, newest first."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.running: list[Proc] = []
        self._names: dict[str, int] = defaultdict(int)

    def start(self, name: str, argv: Sequence[str], env: dict[str, str]) -> Proc:
        self._names[name] += 1
        unique = name if self._names[name] == 1 else f"{name}-{self._names[name]}"
        proc = Proc(unique, argv, env, self.log_dir)
        self.running.append(proc)
        return proc

    def stop(self, proc: Proc, timeout: float = 15.0) -> None:
        proc.stop(timeout)
        if proc in self.running:
            self.running.remove(proc)

    def kill(self, proc: Proc) -> None:
        """SIGKILL ``proc``'s group at once (a crash, not a shutdown)."""
        proc.kill()
        proc.close_log()
        if proc in self.running:
            self.running.remove(proc)

    def close(self) -> None:
        for proc in reversed(self.running):
            proc.stop(timeout=5)
        self.running.clear()


def base_env() -> dict[str, str]:
    """The environment of a child: ours, without any JOBPLANE_ setting from the shell, and
    with the demo jobs (the benches run demo.noop and demo.sleep)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOBPLANE_")}
    env["JOBPLANE_DEMO_JOBS"] = "1"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


def api_healthy(port: int) -> bool:
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
        conn.request("GET", "/healthz")
        ok = conn.getresponse().status == 200
        conn.close()
        return ok
    except OSError:
        return False


def free_port() -> int:
    """A free port outside the ephemeral range: no outgoing connection of another
    process can hold it, so a server's port is its own (``tests.private_servers``)."""
    from tests.private_servers import free_port as free_server_port

    return free_server_port()


# -- the scratch database and Redis --------------------------------------------------


class ScratchDatabase:
    """A fresh PostgreSQL database of this run, dropped (WITH FORCE) by ``drop()``.

    ``admin_url``: the server's maintenance database (default: ``BENCH_PG``, the shared
    server); fault runs give their private cluster's.
    """

    def __init__(self, prefix: str, admin_url: str = PG_ADMIN_URL) -> None:
        self.name = f"{prefix}_{os.getpid()}_{uuid.uuid4().hex[:6]}"
        self.admin_url = admin_url
        base = admin_url.rsplit("/", 1)[0]
        self.conninfo = f"{base}/{self.name}"
        self.url = self.conninfo.replace("postgresql://", "postgresql+psycopg://", 1)
        admin(f'CREATE DATABASE "{self.name}"', admin_url)
        self._conn: psycopg.Connection[Any] | None = None

    def connect(self) -> psycopg.Connection[Any]:
        """One autocommit connection of the bench's own, reused for every poll."""
        if self._conn is None or self._conn.closed:
            self._conn = psycopg.connect(self.conninfo, autocommit=True, application_name="bench")
        return self._conn

    def disconnect(self) -> None:
        """Close the bench's connection (a broken one, say); the next query opens another."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def query(self, sql: str, params: Sequence[Any] | dict[str, Any] | None = None) -> list[Any]:
        return self.connect().execute(sql, params).fetchall()  # type: ignore[arg-type]

    def scalar(self, sql: str, params: Sequence[Any] | dict[str, Any] | None = None) -> Any:
        rows = self.query(sql, params)
        return rows[0][0] if rows else None

    def migrate(self, env: dict[str, str], log_dir: Path) -> None:
        log = log_dir / "migrate.log"
        with log.open("ab") as out:
            code = subprocess.call(
                [JOBPLANE, "migrate"],
                env={**env, "JOBPLANE_DATABASE_URL": self.url},
                cwd=ROOT,
                stdout=out,
                stderr=subprocess.STDOUT,
                timeout=120,
            )
        if code != 0:
            raise BenchError(f"jobplane migrate failed ({code}); see {log}")

    def drop(self) -> None:
        if self._conn is not None:
            self._conn.close()
        admin(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)', self.admin_url)


def admin(sql: str, admin_url: str = PG_ADMIN_URL) -> None:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(sql)  # type: ignore[arg-type]


def redis_url(db: int) -> str:
    return f"redis://{REDIS_HOST}:{REDIS_PORT}/{db}"


def redis_client(db: int) -> redis.Redis:
    return redis.Redis(REDIS_HOST, REDIS_PORT, db=db)


OWNER_KEY = "jobplane:bench:owner"


def claim_redis_db(db: int) -> redis.Redis:
    """FLUSHDB Redis db ``db`` for this run, unless another live bench run holds it.

    Two runs on one Redis db would flush each other's messages and counters; the owner
    key (our pid) is dropped by the FLUSHDB at the end, and a dead owner is ignored.
    """
    client = redis_client(db)
    owner = client.get(OWNER_KEY)
    if owner:
        pid = int(owner)
        try:
            alive = pid != os.getpid() and (os.kill(pid, 0) or True)
        except OSError:
            alive = False
        if alive:
            raise BenchError(
                f"Redis db {db} is in use by another bench run (pid {pid}); wait for it, or "
                "choose other dbs (BENCH_REDIS_DB, BENCH_RAW_REDIS_DB, BENCH_CHAOS_REDIS_DB)"
            )
    client.flushdb()
    client.set(OWNER_KEY, str(os.getpid()))
    return client


def server_versions() -> dict[str, str]:
    with psycopg.connect(PG_ADMIN_URL) as conn:
        pg = conn.execute("SHOW server_version").fetchone()[0]  # type: ignore[index]
    info: Any = redis.Redis(REDIS_HOST, REDIS_PORT).info("server")
    return {"postgresql": str(pg), "redis": str(info["redis_version"])}


# -- HTTP ----------------------------------------------------------------------------


class Http:
    """A keep-alive HTTP/1.1 connection (stdlib: far less client CPU than httpx)."""

    def __init__(
        self, port: int, host: str = "127.0.0.1", headers: dict[str, str] | None = None
    ) -> None:
        """``headers`` go with every request (``Authorization``, say)."""
        self.host, self.port = host, port
        self.headers = headers or {}
        self.conn = http.client.HTTPConnection(host, port, timeout=60)
        self.reconnects = 0

    def post(self, path: str, body: Any) -> tuple[int, Any]:
        payload = json.dumps(body).encode()
        status, data = self.request("POST", path, payload, {"Content-Type": "application/json"})
        return status, json.loads(data) if data else None

    def get(self, path: str) -> tuple[int, bytes]:
        """The status and the raw body of ``GET path``."""
        return self.request("GET", path)

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, bytes]:
        for attempt in (1, 2):
            try:
                self.conn.request(method, path, body, {**self.headers, **(headers or {})})
                response = self.conn.getresponse()
                return response.status, response.read()
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                # A keep-alive connection the server closed while idle: reconnect once.
                self.conn.close()
                self.reconnects += 1
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def close(self) -> None:
        self.conn.close()


# -- CPU accounting ------------------------------------------------------------------

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class CpuSnapshot:
    at: float
    #: pid -> (comm, process group, CPU seconds so far)
    procs: dict[int, tuple[str, int, float]]
    #: the machine's busy and total jiffies, all cores
    busy: int
    total: int


@dataclass(frozen=True)
class ProcStat:
    """What ``/proc/<pid>/stat`` says of a process's CPU, in seconds."""

    comm: str
    ppid: int
    pgrp: int
    cpu: float  #: its own user + system time
    children_cpu: float  #: that of its children that exited and it waited for


def proc_stat(pid: int) -> ProcStat | None:
    """``pid``'s ``/proc/<pid>/stat``, or None once it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            raw = stat.read().decode(errors="replace")
    except OSError:
        return None
    comm = raw[raw.index("(") + 1 : raw.rindex(")")]
    fields = raw[raw.rindex(")") + 2 :].split()
    # fields[0] is state (field 3): ppid is field 4, pgrp 5, utime 14, stime 15, cutime
    # 16, cstime 17
    ticks = [int(value) for value in fields[11:15]]
    return ProcStat(
        comm,
        int(fields[1]),
        int(fields[2]),
        (ticks[0] + ticks[1]) / CLOCK_TICKS,
        (ticks[2] + ticks[3]) / CLOCK_TICKS,
    )


def cpu_snapshot() -> CpuSnapshot:
    procs: dict[int, tuple[str, int, float]] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit() and (stat := proc_stat(int(entry.name))):
            procs[int(entry.name)] = (stat.comm, stat.pgrp, stat.cpu)
    with open("/proc/stat") as stat:
        values = [int(v) for v in stat.readline().split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    total = sum(values[:8])
    return CpuSnapshot(time.time(), procs, total - idle, total)


@dataclass
class CpuUsage:
    """CPU seconds spent between two snapshots, by the groups a run cares about."""

    seconds: dict[str, float]
    wall: float
    #: what "other" was, by command name (other sessions' tests, py-spy …)
    others: dict[str, float]
    machine_busy: float  #: fraction of all cores busy over the window (0..1)
    cores: int = field(default_factory=lambda: os.cpu_count() or 1)

    def per_item_ms(self, items: int) -> dict[str, float]:
        return {name: 1000 * secs / items for name, secs in self.seconds.items()}


def cpu_usage(before: CpuSnapshot, after: CpuSnapshot, groups: dict[int, str]) -> CpuUsage:
    """CPU used by each process group in ``groups`` (pgid -> name), PostgreSQL, Redis,
    this bench process (its client threads) and everything else."""
    me = os.getpid()
    used: dict[str, float] = defaultdict(float)
    others: dict[str, float] = defaultdict(float)
    for pid, (comm, pgrp, secs) in after.procs.items():
        earlier = before.procs.get(pid)
        delta = secs - earlier[2] if earlier and earlier[0] == comm else secs
        if delta <= 0:
            continue
        if pgrp in groups:
            name = groups[pgrp]
        elif pid == me:
            name = "bench client"
        elif comm == "postgres":
            name = "postgresql"
        elif comm.startswith("redis-server"):
            name = "redis"
        else:
            name = "other"
            others[comm] += delta
        used[name] += delta
    span = after.total - before.total
    busy = (after.busy - before.busy) / span if span else 0.0
    return CpuUsage(dict(used), after.at - before.at, dict(others), busy)


def format_cpu(usage: CpuUsage, items: int, what: str = "job") -> str:
    order = sorted(usage.seconds.items(), key=lambda kv: -kv[1])
    total = sum(usage.seconds.values())
    lines = [
        f"    CPU over {usage.wall:.1f} s: machine {100 * usage.machine_busy:.0f}% busy "
        f"({usage.cores} cores); {1000 * total / items:.2f} ms CPU per {what} in all"
    ]
    for name, secs in order:
        lines.append(
            f"      {name:<16} {secs:7.2f} s  {1000 * secs / items:6.3f} ms/{what}  "
            f"{100 * secs / usage.wall:5.0f}% of a core"
        )
    if usage.others:
        top = sorted(usage.others.items(), key=lambda kv: -kv[1])[:4]
        lines.append("      other: " + ", ".join(f"{comm} {secs:.2f} s" for comm, secs in top))
    return "\n".join(lines)


class BackendCpu:
    """PostgreSQL's CPU over a window: of one application's connections to one database
    (``application_name``), and of the whole server.

    A query may hand part of its scan to parallel workers, processes that live a fraction
    of a second: a thread lists the postmaster's children every ``interval`` s and follows
    those that say ``parallel worker for PID <one of ours>``; each one's last sample is
    its figure, so up to ``interval`` s of each is missed (``parallel`` is a floor). The
    server's figure is exact: every postgres process's time, plus what the postmaster
    collected from the children that exited (``cutime``/``cstime``), before and after.
    It counts the other databases of the server too.
    """

    def __init__(self, db: ScratchDatabase, application_name: str, interval: float = 0.01):
        self.db = db
        self.application_name = application_name
        self.interval = interval
        backend = int(db.scalar("SELECT pg_backend_pid()"))
        stat = proc_stat(backend)
        if stat is None:
            raise BenchError("PostgreSQL's processes are not visible in /proc (another host?)")
        self.postmaster = stat.ppid
        #: The postmaster's children seen: pid -> the backend it is a parallel worker for
        #: (None: not one). A pid is forgotten when it exits: pids are reused.
        self._roles: dict[int, int | None] = {}
        self._first: dict[int, float] = {}  #: parallel worker -> CPU when first seen
        self._last: dict[int, float] = {}  #: parallel worker -> CPU when last seen
        self._done: list[tuple[int, float]] = []  #: (its leader, CPU in the window)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def backends(self) -> set[int]:
        rows = self.db.query(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
            "AND application_name = %s AND backend_type = 'client backend'",
            (self.application_name,),
        )
        return {int(pid) for (pid,) in rows}

    def measure(self, body: Callable[[], T]) -> tuple[T, BackendUsage]:
        """Run ``body`` and say what PostgreSQL spent meanwhile."""
        self._roles.clear()
        self._first.clear()
        self._last.clear()
        self._done.clear()
        self._sample(first=True)
        ours = self.backends()
        before, server_before, started = self._cpu(ours), self._server_cpu(), time.monotonic()
        self._stop.clear()
        self._thread = threading.Thread(target=self._follow, daemon=True)
        self._thread.start()
        try:
            result = body()
        finally:
            self._stop.set()
            self._thread.join()
        wall = time.monotonic() - started
        ours |= self.backends()
        after, server_after = self._cpu(ours), self._server_cpu()
        own = sum(cpu - before.get(pid, 0.0) for pid, cpu in after.items())
        self._forget(set())
        parallel = [cpu for leader, cpu in self._done if leader in ours]
        return result, BackendUsage(
            wall, own, sum(parallel), len(parallel), server_after - server_before
        )

    def _follow(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def _sample(self, *, first: bool = False) -> None:
        path = f"/proc/{self.postmaster}/task/{self.postmaster}/children"
        try:
            with open(path) as children:
                pids = [int(pid) for pid in children.read().split()]
        except OSError:
            return
        self._forget(set(pids))
        for pid in pids:
            if pid not in self._roles and (role := _role(pid)) is not None:
                self._roles[pid] = role[0]
            if self._roles.get(pid) is not None and (stat := proc_stat(pid)):
                if first:
                    self._first[pid] = stat.cpu
                self._last[pid] = stat.cpu

    def _forget(self, alive: set[int]) -> None:
        """Close the accounts of the children no longer in ``alive``."""
        for pid in [pid for pid in self._roles if pid not in alive]:
            leader = self._roles.pop(pid)
            if leader is not None and pid in self._last:
                self._done.append((leader, self._last.pop(pid) - self._first.pop(pid, 0.0)))

    def _cpu(self, pids: Iterable[int]) -> dict[int, float]:
        return {pid: stat.cpu for pid in pids if (stat := proc_stat(pid))}

    def _server_cpu(self) -> float:
        snapshot = cpu_snapshot()
        live = sum(cpu for comm, _, cpu in snapshot.procs.values() if comm == "postgres")
        postmaster = proc_stat(self.postmaster)
        return live + (postmaster.children_cpu if postmaster else 0.0)


def _role(pid: int) -> tuple[int | None] | None:
    """(the backend PID that ``pid`` is a parallel worker for, or None), or None while
    ``pid`` has not named itself yet: a child of the postmaster sets its process title
    (``postgres: …``) a moment after the fork."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
            title = cmdline.read()
    except OSError:
        return (None,)
    if not title.startswith(b"postgres:"):
        return None
    found = re.search(rb"parallel worker for PID (\d+)", title)
    return (int(found.group(1)) if found else None,)


@dataclass(frozen=True)
class BackendUsage:
    """CPU seconds PostgreSQL spent over ``wall`` seconds (``BackendCpu.measure``)."""

    wall: float
    own: float  #: the application's backends
    parallel: float  #: the parallel workers they led (a floor, see ``BackendCpu``)
    parallel_workers: int
    server: float  #: every process of the server, other databases' included

    @property
    def application(self) -> float:
        return self.own + self.parallel

    def share(self, seconds: float) -> float:
        """``seconds`` of CPU as a fraction of one core over the window."""
        return seconds / self.wall if self.wall else 0.0


# -- statistics ----------------------------------------------------------------------


def percentile(values: Sequence[float], p: float) -> float:
    """The ``p``-th percentile (0..100), linear between the closest ranks."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * p / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def summary(values: Iterable[float]) -> dict[str, float]:
    data = list(values)
    return {
        "n": len(data),
        "p50": percentile(data, 50),
        "p95": percentile(data, 95),
        "p99": percentile(data, 99),
        "max": max(data) if data else float("nan"),
        "mean": sum(data) / len(data) if data else float("nan"),
    }


def machine() -> dict[str, Any]:
    model = "?"
    with open("/proc/cpuinfo") as info:
        for line in info:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as info:
        mem_kb = int(info.readline().split()[1])
    return {
        "cores": os.cpu_count(),
        "cpu": model,
        "ram_gib": round(mem_kb / 1024 / 1024, 1),
        "python": sys.version.split()[0],
        **server_versions(),
    }


def print_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """``rows`` under ``header``, in left-aligned columns, after a blank line."""
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    print()
    for row in [header, *rows]:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))


def loadavg() -> str:
    with open("/proc/loadavg") as load:
        return " ".join(load.read().split()[:3])


# -- a jobplane platform of real processes --------------------------------------------

#: Dramatiq's idle consumer backs off up to this many ms between fetches (default 1,000).
WORKER_TIMEOUT_MS = "100"


class Platform:
    """``jobplane api``, ``relay`` and ``worker`` processes on one database and Redis db.

    With ``app_names``, each process's connections carry ``application_name=<role>``,
    so PostgreSQL's views and logs tell them apart. ``broker_url`` overrides the shared
    Redis's db ``redis_db``; ``extra_env`` is added to every process's environment.
    """

    def __init__(
        self,
        procs: Procs,
        db: ScratchDatabase,
        redis_db: int,
        *,
        settings: dict[str, str] | None = None,
        app_names: bool = False,
        broker_url: str | None = None,
        extra_env: dict[str, str] | None = None,
    ) -> None:
        self.procs = procs
        self.db = db
        self.redis_db = redis_db
        self.broker_url = broker_url or redis_url(redis_db)
        self.extra_env = extra_env or {}
        self.settings = settings or {}
        self.app_names = app_names
        self.api_port: int | None = None
        #: Every API started, oldest first (``api_port`` is the newest's).
        self.api_ports: list[int] = []

    def env(self, role: str, extra: dict[str, str] | None = None) -> dict[str, str]:
        url = self.db.url + (f"?application_name={role}" if self.app_names else "")
        return {
            **base_env(),
            "JOBPLANE_DATABASE_URL": url,
            "JOBPLANE_BROKER_URL": self.broker_url,
            **{f"JOBPLANE_{k.upper()}": v for k, v in self.settings.items()},
            **self.extra_env,
            **(extra or {}),
        }

    def migrate(self) -> None:
        self.db.migrate(self.env("migrate"), self.procs.log_dir)

    def start_api(self, port: int | None = None) -> Proc:
        """An API on ``port`` (default: a free one), once it bound the port and answers.

        Another run's server may take a free port before ours binds it, and would then
        answer /healthz itself: the API's own log line says the port is ours.
        """
        port = port or free_port()
        proc = self.procs.start("api", [JOBPLANE, "api", "--port", str(port)], self.env("api"))
        bound = f"Uvicorn running on http://127.0.0.1:{port}"
        wait_for(
            lambda: proc.check_alive() or (bound in proc.log_text() and api_healthy(port)),
            timeout=60,
            what="the API to answer /healthz",
        )
        proc.check_alive()
        self.api_port = port
        self.api_ports.append(port)
        return proc

    def start_relay(self, *, wait: bool = True) -> Proc:
        proc = self.procs.start("relay", [JOBPLANE, "relay"], self.env("relay"))
        if wait:
            wait_relay_ready(proc)
        return proc

    def start_worker(self, processes: int = 1, threads: int = 8, *, wait: bool = True) -> Proc:
        argv = [JOBPLANE, "worker", "--processes", str(processes), "--threads", str(threads)]
        env = self.env("worker", {"dramatiq_worker_timeout": WORKER_TIMEOUT_MS})
        proc = self.procs.start("worker", argv, env)
        if wait:
            wait_worker_ready(proc, processes)
        return proc

    def status_counts(self, since: float | None = None) -> dict[str, int]:
        if since is None:
            rows = self.db.query("SELECT status, count(*) FROM jobplane_tasks GROUP BY status")
        else:
            rows = self.db.query(
                "SELECT status, count(*) FROM jobplane_tasks WHERE created_at >= to_timestamp(%s) "
                "GROUP BY status",
                (since,),
            )
        return {str(status): int(count) for status, count in rows}

    def outbox_count(self) -> int:
        return int(self.db.scalar("SELECT count(*) FROM jobplane_outbox"))


def wait_relay_ready(proc: Proc, timeout: float = 60) -> None:
    """Until the relay logged that it started."""
    wait_for(
        lambda: proc.check_alive() or "relay started" in proc.log_text(),
        timeout=timeout,
        what=f"{proc.name} to start",
    )


def wait_worker_ready(proc: Proc, processes: int, timeout: float = 60) -> None:
    """Until each of Dramatiq's worker processes logged that it is ready."""
    wait_for(
        lambda: (
            proc.check_alive()
            or proc.log_text().count("Worker process is ready for action") >= processes
        ),
        timeout=timeout,
        what=f"{proc.name} to be ready",
    )
