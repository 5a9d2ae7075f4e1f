"""``jobplane dev`` (what ``make dev`` runs): one process, SQLite, the in-process broker."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import free_port, wait_until

TOKEN = "dev-test-token-0123"


class Dev:
    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.log = (workdir / "dev.log").open("ab")
        # No JOBPLANE_DEMO_JOBS either: jobplane dev turns the demo jobs on itself.
        env = {k: v for k, v in os.environ.items() if not k.startswith("JOBPLANE_")}
        self.popen = subprocess.Popen(
            [sys.executable, "-m", "jobplane.cli", "dev", "--port", str(self.port)],
            cwd=workdir,
            env={
                **env,
                "PYTHONPATH": str(Path(__file__).resolve().parents[2]),
                "JOBPLANE_API_TOKEN": TOKEN,
            },
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        self.http = httpx.Client(
            base_url=f"http://127.0.0.1:{self.port}",
            headers={"Authorization": f"Bearer {TOKEN}"},
            timeout=10,
        )
        wait_until(self._up, timeout=60, what="jobplane dev to serve HTTP")

    def _up(self) -> bool:
        assert self.popen.poll() is None, "jobplane dev exited early"
        try:
            return self.http.get("/healthz").status_code == 200
        except httpx.HTTPError:
            return False

    def task(self, task_id: str) -> dict[str, Any]:
        return self.http.get(f"/api/tasks/{task_id}").json()

    def stop(self) -> int:
        """Ctrl-C, as a person would."""
        self.popen.send_signal(signal.SIGINT)
        code = self.popen.wait(timeout=30)
        self.http.close()
        self.log.close()
        return code


def test_dev_runs_a_job_end_to_end_and_resumes_pending_work_after_a_restart(
    tmp_path: Path,
) -> None:
    # Given jobplane dev started in an empty directory
    dev = Dev(tmp_path)
    try:
        # When a job is submitted over HTTP, it completes
        task_id = dev.http.post(
            "/api/tasks", json={"type": "demo.echo", "params": {"hi": 1}}
        ).json()["taskId"]
        done = wait_until(
            lambda: (t := dev.task(task_id))["status"] == "completed" and t, what="completion"
        )
        assert done["result"] == {"hi": 1}
        # And a delayed job is still pending when Ctrl-C stops the platform
        later = dev.http.post("/api/tasks", json={"type": "demo.echo", "delaySeconds": 2}).json()[
            "taskId"
        ]
    finally:
        code = dev.stop()
    assert code == 0
    assert (tmp_path / "jobplane.db").exists()

    # Then, started again on the same file, it finishes the pending work
    dev = Dev(tmp_path)
    try:
        wait_until(lambda: dev.task(later)["status"] == "completed", timeout=30, what="resumed job")
        assert dev.task(task_id)["status"] == "completed"
        assert dev.task(later)["attempts"] == 1
    finally:
        assert dev.stop() == 0
