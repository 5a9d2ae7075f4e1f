"""Throwaway PostgreSQL and Redis servers of one run, for tests that break servers.

Fault runs restart PostgreSQL, crash Redis, make it read-only and delete its messages.
Doing that to the shared servers on 5432 and 6379 would break every other test run on
the machine, so a fault run starts its own: a PostgreSQL cluster copied from a cached
``initdb`` (a fresh ``initdb`` takes 7-9 s here, a copy a fraction of a second) and a
``redis-server`` without persistence, each on a port of its own. ``PrivateServers``
stops and deletes both when its ``with`` block ends, at interpreter exit, and (for a
run that was SIGKILLed) at the start of the next run.

Nothing here imports jobplane: ``bench/`` uses it too.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import redis


def _newest_pg_bin() -> Path:
    """The server binaries of the newest PostgreSQL that Debian's packages installed."""
    installed = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parts[-3])
    )
    return installed[-1].parent if installed else Path("/usr/lib/postgresql/15/bin")


PG_BIN = Path(os.environ.get("JOBPLANE_TEST_PG_BIN") or _newest_pg_bin())
#: Ports are picked below the kernel's ephemeral range (32768-60999 on Linux), so that
#: no client's outgoing connection takes a server's port while the server is down.
PORT_RANGE = (20000, 32000)
PREFIX = "jobplane-private-"
OWNER_FILE = "owner.pid"
#: Settings of the private cluster: enough connections for a platform of a dozen
#: processes with their pools; fsync stays on, as in production.
PG_CONF = """
listen_addresses = '127.0.0.1'
port = {port}
unix_socket_directories = '{socket_dir}'
max_connections = 400
logging_collector = off
"""
#: The SQL command that turns Redis into a replica of a dead address: it keeps its
#: data and answers reads, but every write fails with READONLY, as after a failover.
DEAD_PRIMARY = ("127.0.0.1", 1)
#: Deletes every other message id of a Dramatiq queue, both its list entry and its hash
#: entry, in one atomic step; returns the deleted ids. The order of the rest is kept.
DELETE_HALF = """
local ids = redis.call('LRANGE', KEYS[1], 0, -1)
local kept, deleted = {}, {}
for i, id in ipairs(ids) do
  if i % 2 == 1 then table.insert(deleted, id) else table.insert(kept, id) end
end
if #deleted == 0 then return deleted end
redis.call('DEL', KEYS[1])
for i = 1, #kept, 1000 do
  redis.call('RPUSH', KEYS[1], unpack(kept, i, math.min(i + 999, #kept)))
end
for i = 1, #deleted, 1000 do
  redis.call('HDEL', KEYS[2], unpack(deleted, i, math.min(i + 999, #deleted)))
end
return deleted
"""


class ServerError(RuntimeError):
    """A private server could not be started or stopped."""


def scratch_root() -> Path:
    """Where clusters live: tmpfs when there is one (copies and restarts are fast)."""
    shm = Path("/dev/shm")
    return shm if shm.is_dir() and os.access(shm, os.W_OK) else Path(tempfile.gettempdir())


def free_port() -> int:
    """A port nobody listens on, outside the ephemeral range."""
    for _ in range(200):
        port = random.randrange(*PORT_RANGE)
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise ServerError(f"no free port in {PORT_RANGE}")


def _as_postgres(argv: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: run its programs as the postgres user then."""
    return ["runuser", "-u", "postgres", "--", *argv] if os.geteuid() == 0 else argv


def _run(argv: list[str], timeout: float = 60) -> None:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    if done.returncode != 0:
        raise ServerError(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr.strip()}")


def _chown_postgres(path: Path) -> None:
    if os.geteuid() == 0:
        shutil.chown(path, "postgres", "postgres")


# -- PostgreSQL ----------------------------------------------------------------------


def template_cluster() -> Path:
    """A cluster fresh from ``initdb`` (trust auth), made once and copied for each run."""
    version = PG_BIN.parent.name
    template = scratch_root() / f"jobplane-pg-template-{version}"
    if (template / "PG_VERSION").exists():
        return template
    building = scratch_root() / f"{template.name}.{os.getpid()}"
    building.mkdir(mode=0o700)
    _chown_postgres(building)
    initdb = [str(PG_BIN / "initdb"), "-D", str(building), "--auth=trust", "-U", "postgres"]
    _run(_as_postgres([*initdb, "-E", "UTF8", "--no-sync", "--no-instructions"]), timeout=120)
    try:
        building.rename(template)
    except OSError:  # another run made it meanwhile
        shutil.rmtree(building, ignore_errors=True)
    return template


class PrivatePostgres:
    """A PostgreSQL cluster in ``directory`` on its own port; superuser postgres, trust."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.data = directory / "data"
        self.log_path = directory / "postgresql.log"
        self.port = free_port()
        self.admin_url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        self.running = False

    def create(self) -> None:
        """Copy the template cluster here and write this cluster's settings."""
        _run(_as_postgres(["cp", "-a", str(template_cluster()), str(self.data)]))
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.write(PG_CONF.format(port=self.port, socket_dir=self.directory))

    def url(self, database: str) -> str:
        """The SQLAlchemy URL of ``database`` on this cluster."""
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def start(self) -> None:
        pg_ctl = [str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-l", str(self.log_path)]
        _run(_as_postgres([*pg_ctl, "-w", "-t", "60", "start"]), timeout=90)
        self.running = True

    def stop(self, mode: str = "fast") -> None:
        """Stop the cluster: ``fast`` (clean) or ``immediate`` (a crash: recovery at start)."""
        pg_ctl = [str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", mode]
        _run(_as_postgres([*pg_ctl, "-w", "-t", "60", "stop"]), timeout=90)
        self.running = False

    def restart(self, mode: str = "fast", down: float = 0.0) -> float:
        """Stop (``mode``), stay down ``down`` s, start; returns the seconds it was down."""
        began = time.monotonic()
        self.stop(mode)
        time.sleep(down)
        self.start()
        return time.monotonic() - began

    def execute(self, sql: str) -> None:
        with psycopg.connect(self.admin_url, autocommit=True, connect_timeout=5) as conn:
            conn.execute(sql.encode())

    def close(self) -> None:
        if self.running:
            with contextlib.suppress(ServerError, subprocess.TimeoutExpired):
                self.stop("immediate")


# -- Redis ---------------------------------------------------------------------------


class PrivateRedis:
    """A ``redis-server`` without persistence on its own port, run as our child."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.log_path = directory / "redis.log"
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def client(self, db: int = 0) -> redis.Redis:
        return redis.Redis("127.0.0.1", self.port, db=db, socket_timeout=5)

    def start(self) -> None:
        argv = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1"]
        argv += ["--save", "", "--appendonly", "no", "--dir", str(self.directory)]
        argv += ["--logfile", str(self.log_path)]
        self.process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, start_new_session=True)
        (self.directory / "redis.pid").write_text(str(self.process.pid))
        deadline = time.monotonic() + 15
        while not self._answers():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise ServerError(f"redis-server did not start; see {self.log_path}")
            time.sleep(0.05)

    def _answers(self) -> bool:
        try:
            return bool(self.client().ping())
        except redis.RedisError:
            return False

    def crash(self) -> None:
        """SIGKILL the server: without persistence, every key is gone."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        self.process = None

    def restart(self, down: float = 0.0) -> None:
        """Crash, stay down ``down`` s, start empty on the same port."""
        self.crash()
        time.sleep(down)
        self.start()

    def make_read_only(self) -> None:
        """Writes fail with READONLY (a replica of a dead primary) until ``make_writable``."""
        self.client().replicaof(*DEAD_PRIMARY)

    def make_writable(self) -> None:
        self.client().replicaof("NO", "ONE")

    @contextlib.contextmanager
    def read_only(self) -> Iterator[None]:
        self.make_read_only()
        try:
            yield
        finally:
            self.make_writable()

    def delete_half_of_queue(self, queue: str, *, db: int = 0, namespace: str = "dramatiq") -> int:
        """Delete every other queued message of ``queue`` (Dramatiq's layout); other
        keys, the broker epoch among them, stay. Returns how many were deleted."""
        client = self.client(db)
        keys = [f"{namespace}:{queue}", f"{namespace}:{queue}.msgs"]
        deleted: Any = client.eval(DELETE_HALF, 2, *keys)
        return len(deleted)

    def queued(self, queue: str, *, db: int = 0, namespace: str = "dramatiq") -> int:
        """How many message ids wait in ``queue``'s list (not those taken by a worker)."""
        return int(self.client(db).llen(f"{namespace}:{queue}"))

    def close(self) -> None:
        self.crash()


# -- both, with clean-up that always runs -----------------------------------------------


class PrivateServers:
    """A private PostgreSQL cluster and Redis server, started by ``with`` or ``start()``.

    ``close()`` stops both and deletes their files; it runs at the end of the ``with``
    block, at interpreter exit (atexit) if the block was never left, and is harmless
    twice. Servers of a run that died without cleaning up are removed by the next one.
    """

    def __init__(self) -> None:
        reap_orphans()
        self.directory = Path(tempfile.mkdtemp(prefix=PREFIX, dir=scratch_root()))
        self.directory.chmod(0o755)
        (self.directory / OWNER_FILE).write_text(str(os.getpid()))
        pg_dir = self.directory / "pg"
        pg_dir.mkdir()
        _chown_postgres(pg_dir)
        self.postgres = PrivatePostgres(pg_dir)
        self.redis = PrivateRedis(self.directory)
        self._closed = False
        atexit.register(self.close)

    def start(self) -> PrivateServers:
        try:
            self.postgres.create()
            self.postgres.start()
            self.redis.start()
        except BaseException:
            self.close()
            raise
        return self

    def __enter__(self) -> PrivateServers:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self.redis.close()
            self.postgres.close()
        finally:
            shutil.rmtree(self.directory, ignore_errors=True)
            atexit.unregister(self.close)


def reap_orphans() -> None:
    """Stop and delete the servers of runs whose process is gone (SIGKILLed runs)."""
    for directory in scratch_root().glob(f"{PREFIX}*"):
        try:
            owner = int((directory / OWNER_FILE).read_text())
        except (OSError, ValueError):
            continue
        if _alive(owner):
            continue
        _stop_orphan(directory)
        shutil.rmtree(directory, ignore_errors=True)


def _stop_orphan(directory: Path) -> None:
    data = directory / "pg" / "data"
    if (data / "postmaster.pid").exists():
        pg_ctl = [str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"]
        with contextlib.suppress(ServerError, subprocess.TimeoutExpired):
            _run(_as_postgres(pg_ctl))
    with contextlib.suppress(OSError, ValueError):
        pid = int((directory / "redis.pid").read_text())
        # Only if that pid is still our redis-server (pids are reused).
        if str(directory).encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
            os.kill(pid, signal.SIGKILL)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
