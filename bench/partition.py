"""The partition proof: a worker host and a scheduler leader cut off by a real network.

A network namespace stands for another host: its only route to PostgreSQL and Redis is
a veth pair, on whose host side a small TCP forwarder passes connections on to the
shared servers on 127.0.0.1 (which are never reconfigured). The forwarder sets on each
accepted socket the keepalive settings jobplane gives PostgreSQL for its sessions, so
it drops a silent client as the server itself would, and then closes the server-side
connection (which ends the PostgreSQL session and its advisory lock). The network is
cut with ``ip link set <host veth> down``: packets are dropped silently, no reset.

  (a) a worker in the namespace is cut off in the middle of a ``demo.sleep`` job: the
      job completes on a worker on the host, the cut-off run's outcome is discarded,
      and once the network is back the cut-off worker serves jobs of a queue only it
      consumes again (its time is printed; the target is 10 s);
  (b) a scheduler leading maintenance in the namespace, cut off at the same moment, is
      replaced by a standby candidate on the host, the relay or a scheduler (the time
      is printed).

Needs root and iproute2 (``ip netns``). Cleans up namespaces, veths and processes on
every exit.

    .venv/bin/python bench/partition.py [--cut 60] [--keep-logs]
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import harness as h  # noqa: E402

REDIS_DB = int(
    os.environ.get("BENCH_PARTITION_REDIS_DB", os.environ.get("JOBPLANE_TEST_REDIS_DB", "12"))
)
#: Fast recovery, and keepalives of a few seconds: the settings the proof runs with.
SETTINGS = {
    "heartbeat_interval": "0.5",
    "heartbeat_timeout": "3",
    "sweep_interval": "0.5",
    "db_connect_timeout": "2",
    "tcp_keepalive_idle": "1",
    "tcp_keepalive_interval": "1",
    "tcp_keepalive_count": "3",
    "tcp_user_timeout": "3",
    "redis_connect_timeout": "2",
    "redis_socket_timeout": "3",
    "redis_health_check_interval": "2",
}
SERVE_TARGET_S = 10.0  #: the cut-off worker must serve again within this long


class NetnsUnavailable(RuntimeError):
    """Network namespaces cannot be made here (needs root and iproute2's ``ip netns``)."""


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


class Host:
    """A network namespace joined to this host by a veth pair; ``close()`` removes both."""

    def __init__(self) -> None:
        if shutil.which("ip") is None or os.geteuid() != 0:
            raise NetnsUnavailable("the partition proof needs root and iproute2 (`ip netns`)")
        tag = f"{os.getpid() % 100000}"
        self.ns, self.veth_host, self.veth_ns = f"jp{tag}", f"jph{tag}", f"jpn{tag}"
        subnet = self._free_subnet()
        self.host_addr, self.ns_addr = str(subnet[1]), str(subnet[2])
        try:
            ip("netns", "add", self.ns)
            ip("link", "add", self.veth_host, "type", "veth", "peer", "name", self.veth_ns)
            ip("link", "set", self.veth_ns, "netns", self.ns)
            ip("addr", "add", f"{self.host_addr}/30", "dev", self.veth_host)
            ip("link", "set", self.veth_host, "up")
            self.exec("addr", "add", f"{self.ns_addr}/30", "dev", self.veth_ns)
            self.exec("link", "set", self.veth_ns, "up")
            self.exec("link", "set", "lo", "up")
        except (subprocess.CalledProcessError, OSError) as error:
            self.close()
            detail = getattr(error, "stderr", b"") or b""
            raise NetnsUnavailable(f"could not make a namespace: {error} {detail!r}") from error

    @staticmethod
    def _free_subnet() -> ipaddress.IPv4Network:
        used = subprocess.run(["ip", "-4", "addr"], capture_output=True, text=True).stdout
        for third in range(256):
            subnet = ipaddress.ip_network(f"10.213.{third}.{(os.getpid() % 64) * 4}/30")
            if str(subnet[1]) not in used:
                return subnet
        raise NetnsUnavailable("no free 10.213.x.y/30 subnet")

    def exec(self, *args: str) -> None:
        ip("-n", self.ns, *args)

    def prefix(self) -> list[str]:
        return ["ip", "netns", "exec", self.ns]

    def cut(self) -> None:
        ip("link", "set", self.veth_host, "down")

    def restore(self) -> None:
        ip("link", "set", self.veth_host, "up")

    def close(self) -> None:
        for args in (("link", "del", self.veth_host), ("netns", "del", self.ns)):
            subprocess.run(["ip", *args], capture_output=True, timeout=10)


class Forwarder:
    """TCP forwarders on the host side of the veth, in a thread of their own."""

    def __init__(self, listen_host: str, keepalive: dict[str, int]) -> None:
        self.listen_host = listen_host
        self.keepalive = keepalive
        self.loop = asyncio.new_event_loop()
        self.servers: list[asyncio.Server] = []
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def forward(self, target_port: int) -> int:
        """Listen on a free port of the veth address; returns it."""
        future = asyncio.run_coroutine_threadsafe(self._serve(target_port), self.loop)
        return future.result(10)

    async def _serve(self, target_port: int) -> int:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self._tune(writer.get_extra_info("socket"))
            try:
                up_reader, up_writer = await asyncio.open_connection("127.0.0.1", target_port)
            except OSError:
                writer.close()
                return
            await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

        server = await asyncio.start_server(handle, self.listen_host, 0)
        self.servers.append(server)
        return int(server.sockets[0].getsockname()[1])

    def _tune(self, sock: socket.socket) -> None:
        # What PostgreSQL does with the session's tcp_keepalives_* / tcp_user_timeout.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, self.keepalive["idle"])
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, self.keepalive["interval"])
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, self.keepalive["count"])
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, self.keepalive["user_ms"])

    def close(self) -> None:
        """Stop listening, drop every forwarded connection, close the loop."""
        asyncio.run_coroutine_threadsafe(self._shut(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()

    async def _shut(self) -> None:
        for server in self.servers:
            server.close()
        current = asyncio.current_task()
        pipes = [task for task in asyncio.all_tasks() if task is not current]
        for task in pipes:
            task.cancel()
        await asyncio.gather(*pipes, return_exceptions=True)
        for server in self.servers:
            await server.wait_closed()


async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy until either side ends or fails, then close ``writer`` (the other side too)."""
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except OSError:
        pass
    finally:
        writer.close()


def submit(platform: h.Platform, body: dict[str, Any]) -> str:
    assert platform.api_port is not None
    http = h.Http(platform.api_port)
    try:
        status, answer = http.post("/api/tasks", body)
    finally:
        http.close()
    if status != 201:
        raise h.BenchError(f"submission answered {status}: {answer}")
    return str(answer["taskId"])


def task(db: h.ScratchDatabase, task_id: str) -> tuple[str, int, str | None]:
    statement = "SELECT status, attempts, worker FROM jobplane_tasks WHERE id = %s"
    row = db.query(statement, (task_id,))[0]
    return str(row[0]), int(row[1]), row[2]


def run(cut_seconds: float, log_dir: Path) -> dict[str, float]:
    """Both scenarios in one cut; returns the figures (raises BenchError on a failure)."""
    keepalive = {
        "idle": int(SETTINGS["tcp_keepalive_idle"]),
        "interval": int(SETTINGS["tcp_keepalive_interval"]),
        "count": int(SETTINGS["tcp_keepalive_count"]),
        "user_ms": int(float(SETTINGS["tcp_user_timeout"]) * 1000),
    }
    procs = h.Procs(log_dir)
    db = h.ScratchDatabase("jobplane_partition")
    host = forwarder = None
    try:
        h.claim_redis_db(REDIS_DB)
        host = Host()
        forwarder = Forwarder(host.host_addr, keepalive)
        pg_port, redis_port = forwarder.forward(5432), forwarder.forward(6379)
        platform = h.Platform(procs, db, REDIS_DB, settings=SETTINGS)
        platform.migrate()
        platform.start_api()
        remote = {
            **platform.env("remote"),
            "JOBPLANE_DATABASE_URL": db.url.replace(
                "127.0.0.1:5432", f"{host.host_addr}:{pg_port}"
            ),
            "JOBPLANE_BROKER_URL": f"redis://{host.host_addr}:{redis_port}/{REDIS_DB}",
            "dramatiq_worker_timeout": h.WORKER_TIMEOUT_MS,
        }
        jobplane = [*host.prefix(), h.JOBPLANE]
        cut_worker = procs.start(
            "cut-worker", [*jobplane, "worker", "-p", "1", "-t", "2", "-Q", "shared,cutoff"], remote
        )
        h.wait_worker_ready(cut_worker, 1)
        leader = procs.start("cut-scheduler", [*jobplane, "scheduler"], remote)
        h.wait_for(lambda: "is the leader" in leader.log_text(), timeout=30, what="the leader")
        # The relay and the standby scheduler are candidates too: either takes over.
        standbys = [platform.start_relay()]
        standbys.append(
            procs.start("standby-scheduler", [h.JOBPLANE, "scheduler"], platform.env("sched"))
        )
        h.wait_for(
            lambda: "scheduler started" in standbys[1].log_text(), timeout=30, what="standby"
        )

        job = submit(platform, {"type": "demo.sleep", "params": {"seconds": 15}, "queue": "shared"})
        h.wait_for(lambda: task(db, job)[0] == "running", timeout=30, what="the job to start")
        cut_worker_name = task(db, job)[2]
        host_worker = procs.start(
            "host-worker",
            [h.JOBPLANE, "worker", "-p", "1", "-t", "2", "-Q", "shared"],
            platform.env("worker", {"dramatiq_worker_timeout": h.WORKER_TIMEOUT_MS}),
        )
        h.wait_worker_ready(host_worker, 1)

        host.cut()
        cut_at = time.monotonic()
        h.wait_for(
            lambda: any("is the leader" in p.log_text() for p in standbys),
            timeout=60,
            what="a standby to lead",
        )
        takeover = time.monotonic() - cut_at
        h.wait_for(lambda: task(db, job)[0] == "completed", timeout=60, what="the job elsewhere")
        recovered = time.monotonic() - cut_at
        status, attempts, worker = task(db, job)
        if worker == cut_worker_name or attempts < 2:
            raise h.BenchError(f"the job did not complete elsewhere: {worker}, {attempts}")
        time.sleep(max(0.0, cut_seconds - (time.monotonic() - cut_at)))  # the cut lasts

        host.restore()
        back_at = time.monotonic()
        probes = [
            submit(platform, {"type": "demo.noop", "params": {}, "queue": "cutoff"})
            for _ in range(5)
        ]
        h.wait_for(
            lambda: any(task(db, p)[0] == "completed" for p in probes),
            timeout=60,
            what="the cut-off worker to serve again",
        )
        serve_again = time.monotonic() - back_at
        h.wait_for(
            lambda: all(task(db, p)[0] == "completed" for p in probes), timeout=60, what="probes"
        )
        # The cut-off run's body ended; its completion, written once the network was
        # back, must find the task no longer its own.
        h.wait_for(
            lambda: (
                f"task {job} finished but was no longer this attempt's" in cut_worker.log_text()
            ),
            timeout=60,
            what="the cut-off run's outcome to be turned away",
        )
        after = task(db, job)
        if after != (status, attempts, worker):
            raise h.BenchError(f"the cut-off run's outcome was not discarded: {after}")
        return {
            "cut_s": cut_seconds,
            "standby_took_over_s": round(takeover, 2),
            "job_completed_elsewhere_s": round(recovered, 2),
            "cut_worker_served_again_s": round(serve_again, 2),
        }
    finally:
        procs.close()
        if forwarder is not None:
            forwarder.close()
        if host is not None:
            host.close()
        db.drop()
        h.redis_client(REDIS_DB).flushdb()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cut", type=float, default=60.0, help="seconds the network is cut")
    parser.add_argument("--keep-logs", action="store_true")
    args = parser.parse_args()
    h.exit_on_sigterm()
    log_dir = Path(tempfile.mkdtemp(prefix="jobplane-partition-"))
    try:
        figures = run(args.cut, log_dir)
    except (h.BenchError, NetnsUnavailable) as error:
        print(f"partition proof FAILED: {error} (logs in {log_dir})")
        return 1
    print(json.dumps(figures, indent=2))
    target = figures["cut_worker_served_again_s"] <= SERVE_TARGET_S
    print(
        f"cut-off worker served again in {figures['cut_worker_served_again_s']} s "
        f"(target {SERVE_TARGET_S:g} s: {'met' if target else 'MISSED'})"
    )
    if not args.keep_logs:
        shutil.rmtree(log_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
