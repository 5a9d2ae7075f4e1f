"""What ``make example`` runs: the app on jobplane's embedded default, start to finish.

It migrates both histories into a new SQLite file, starts ``jobplane dev`` (relay,
worker and the in-process broker, in one process) and the app under uvicorn, posts a
report, prints it once its job has written it, and the task as jobplane recorded it
(read from ``jobplane dev``'s API), and stops both.

The app and ``jobplane dev`` are two processes that share only the database: the app
never talks to the broker. It writes its row and the task's outbox row in one
transaction, and the relay in ``jobplane dev`` publishes what was committed.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import httpx

HERE = Path(__file__).resolve().parent
#: Seconds each step may take before the example gives up, saying which step.
DEADLINE = 30.0


def main() -> int:
    # Ctrl-C or a SIGTERM stops the processes below on the way out, like an error does.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    with tempfile.TemporaryDirectory(prefix="jobplane-example-") as workdir:
        env = {
            # The embedded default, whatever this shell's own JOBPLANE_* settings say.
            **{k: v for k, v in os.environ.items() if not k.startswith("JOBPLANE_")},
            "JOBPLANE_DATABASE_URL": f"sqlite:///{workdir}/example.db",
            "JOBPLANE_BROKER_URL": "memory://",
            "JOBPLANE_JOBS": "app.jobs",
            "PYTHONPATH": str(HERE),  # the app's packages, for every process below
            "JOBPLANE_API_TOKEN": secrets.token_urlsafe(16),  # to read the task from its API
        }
        log_path = Path(workdir) / "processes.log"
        with log_path.open("ab") as log:
            try:
                run_example(env, log)
            except KeyboardInterrupt:
                print("interrupted: everything it started is stopped", file=sys.stderr)
                return 130
            except Exception as error:
                log.flush()
                print(log_path.read_text(errors="replace"), file=sys.stderr)
                print(f"the example failed: {error!r}", file=sys.stderr)
                return 1
    return 0


def run_example(env: dict[str, str], log: IO[bytes]) -> None:
    python = sys.executable
    run([python, "-m", "alembic", "upgrade", "head"], env, log)
    run([python, "-m", "jobplane.cli", "migrate"], env, log)
    print("migrated: the app's history (alembic_version) and jobplane's", flush=True)

    dev_port, app_port = free_port(), free_port()
    processes: list[subprocess.Popen[bytes]] = []
    try:
        dev = ["-m", "jobplane.cli", "dev", "--port", str(dev_port), "--threads", "2"]
        processes.append(start([python, *dev], env, log))
        processes.append(
            start([python, "-m", "uvicorn", "app.main:app", "--port", str(app_port)], env, log)
        )
        token = {"Authorization": f"Bearer {env['JOBPLANE_API_TOKEN']}"}
        with (
            httpx.Client(base_url=f"http://127.0.0.1:{app_port}", timeout=10) as http,
            httpx.Client(base_url=f"http://127.0.0.1:{dev_port}", headers=token) as jobplane,
        ):
            wait_for(lambda: answers(http, "/openapi.json"), "the app to answer", processes)
            wait_for(lambda: answers(jobplane, "/healthz"), "jobplane dev to answer", processes)
            created = http.post("/reports", json={"title": "Sales, November 2026"})
            created.raise_for_status()
            show(f"POST /reports -> {created.status_code}", created.json())

            report_url = f"/reports/{created.json()['id']}"
            done = wait_for(
                lambda: (r := http.get(report_url).json())["status"] == "done" and r,
                "the job to write the report",
                processes,
            )
            show(f"GET {report_url}", done)
            task = jobplane.get(f"/api/tasks/{done['task_id']}").json()
            show("its jobplane task", {key: task[key] for key in ("taskType", "status", "result")})
    finally:
        for process in reversed(processes):
            stop(process)


def show(what: str, document: Any) -> None:
    print(f"{what}:\n{json.dumps(document, indent=2)}", flush=True)


def run(args: list[str], env: dict[str, str], log: IO[bytes]) -> None:
    done = subprocess.run(args, cwd=HERE, env=env, stdout=log, stderr=subprocess.STDOUT)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(args[1:])} exited {done.returncode}")


def start(args: list[str], env: dict[str, str], log: IO[bytes]) -> subprocess.Popen[bytes]:
    # A session of its own: Ctrl-C reaches this script only, which stops it cleanly.
    return subprocess.Popen(
        args, cwd=HERE, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )


def stop(process: subprocess.Popen[bytes]) -> None:
    """Ctrl-C, as a person would stop it; killed, with its children, if it hangs."""
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
    try:
        process.wait(timeout=DEADLINE)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def answers(http: httpx.Client, path: str) -> bool:
    try:
        return http.get(path).status_code == 200
    except httpx.TransportError:
        return False


def wait_for(
    condition: Callable[[], Any], what: str, processes: list[subprocess.Popen[bytes]]
) -> Any:
    """``condition()``'s first truthy value; an error if a process exits meanwhile."""
    deadline = time.monotonic() + DEADLINE
    while not (value := condition()):
        if exited := [p for p in processes if p.poll() is not None]:
            raise RuntimeError(f"{exited[0].args!r} exited {exited[0].returncode}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"gave up waiting {DEADLINE:.0f} s for {what}")
        time.sleep(0.1)
    return value


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


if __name__ == "__main__":
    sys.exit(main())
