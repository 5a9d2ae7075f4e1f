"""Real ``jobplane`` processes for end-to-end tests: start, talk to, SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import IO

import httpx

from tests.conftest import free_port, wait_until

JOBPLANE = (sys.executable, "-m", "jobplane.cli")


class Process:
    """One jobplane process with its output captured to a file."""

    def __init__(
        self,
        name: str,
        args: list[str],
        env: dict[str, str],
        log_dir: Path,
        command: Sequence[str] = JOBPLANE,
        cwd: Path | None = None,
    ) -> None:
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        self._log: IO[bytes] = self.log_path.open("ab")
        self.popen = subprocess.Popen(
            [*command, *args],
            env=env,
            cwd=cwd,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, so SIGKILL reaches children
        )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def kill(self) -> None:
        """SIGKILL the process and every child (Dramatiq's worker processes)."""
        if self.popen.poll() is None:
            os.killpg(self.popen.pid, signal.SIGKILL)
        self.popen.wait(timeout=10)

    def terminate(self, timeout: float = 30) -> int:
        """SIGTERM to the main process only, as ``docker stop`` or systemd send it."""
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
        try:
            return self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            return -9

    def close(self) -> None:
        self.kill()
        self._log.close()


class Platform:
    """API, relay and workers as separate processes on one database and broker.

    ``command`` runs jobplane (default: this interpreter's ``-m jobplane.cli``), in ``cwd``.
    """

    def __init__(
        self,
        database_url: str,
        broker_url: str,
        log_dir: Path,
        command: Sequence[str] = JOBPLANE,
        cwd: Path | None = None,
        **settings: str,
    ) -> None:
        self.command = command
        self.cwd = cwd
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("JOBPLANE_")},
            "JOBPLANE_DATABASE_URL": database_url,
            "JOBPLANE_BROKER_URL": broker_url,
            "JOBPLANE_DEMO_JOBS": "1",
            # Fast recovery for tests: stale after 3 s, swept every 0.5 s.
            "JOBPLANE_HEARTBEAT_INTERVAL": "0.5",
            "JOBPLANE_HEARTBEAT_TIMEOUT": "3",
            "JOBPLANE_SWEEP_INTERVAL": "0.5",
            # Dramatiq's idle consumer backs off up to this many ms.
            "dramatiq_worker_timeout": "100",
            **{f"JOBPLANE_{k.upper()}": v for k, v in settings.items()},
        }
        self.log_dir = log_dir
        self.processes: list[Process] = []
        self.api_url: str | None = None
        self._clients: list[httpx.Client] = []

    def start(
        self,
        name: str,
        *args: str,
        env: dict[str, str] | None = None,
        command: Sequence[str] | None = None,
    ) -> Process:
        """A process with the platform's environment: jobplane's ``args``, or another
        ``command`` of the user's (their app, their migrations) beside it."""
        process = Process(
            f"{name}-{len(self.processes)}",
            list(args),
            {**self.env, **(env or {})},
            self.log_dir,
            self.command if command is None else command,
            self.cwd,
        )
        self.processes.append(process)
        return process

    def start_api(self) -> Process:
        port = free_port()
        process = self.start("api", "api", "--port", str(port))
        self.api_url = f"http://127.0.0.1:{port}"
        wait_until(self._healthy, timeout=30, what="the API to answer /healthz")
        return process

    def start_relay(self, env: dict[str, str] | None = None) -> Process:
        return self.start("relay", "relay", env=env)

    def start_worker(self, processes: int = 1, threads: int = 4) -> Process:
        return self.start(
            "worker", "worker", "--processes", str(processes), "--threads", str(threads)
        )

    def migrate(self) -> str:
        """Run ``jobplane migrate`` to its end; returns its log (it must succeed)."""
        migrate = self.start("migrate", "migrate")
        assert migrate.popen.wait(timeout=120) == 0, migrate.log()
        return migrate.log()

    def start_every_process(self) -> tuple[Process, Process]:
        """API, relay, a worker (1 process, 2 threads) and a scheduler, on a migrated
        database; returns the two maintenance candidates, (relay, scheduler)."""
        self.start_api()
        relay = self.start_relay()
        self.start_worker(processes=1, threads=2)
        return relay, self.start("scheduler", "scheduler")

    def client(self) -> httpx.Client:
        assert self.api_url is not None, "start_api() first"
        client = httpx.Client(base_url=self.api_url, timeout=30)
        self._clients.append(client)
        return client

    def _healthy(self) -> bool:
        try:
            return httpx.get(f"{self.api_url}/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def close(self) -> None:
        for client in self._clients:
            client.close()
        for process in reversed(self.processes):
            process.close()
