"""The fault suite's jobs, loaded by every jobplane process through JOBPLANE_JOBS.

Each is a demo job (``jobplane.workers.jobs.demo``) that first appends one line per start of
its body (task id, attempt, dispatch, pid, process group, time) to a file of its
worker process, in the directory ``BENCH_CHAOS_STARTS`` names. A file and not a
table, so that recording survives every database fault the run injects: one
``write`` on an ``O_APPEND`` descriptor reaches the page cache at once, so a SIGKILL
a moment later loses nothing.
"""

from __future__ import annotations

import json
import os
import threading
import time
from typing import Any

from bench.faultsuite.plan import FAIL, NOOP, SLEEP, STARTS_DIR_ENV
from jobplane import current_job, job
from jobplane.workers.jobs import demo

_files: dict[int, int] = {}  #: pid -> descriptor (Dramatiq forks worker processes)
_lock = threading.Lock()


def record_start() -> None:
    """Append this body start to the process's file (nothing without the variable)."""
    directory = os.environ.get(STARTS_DIR_ENV)
    if not directory:
        return
    ctx = current_job()
    start = {
        "task": ctx.task_id,
        "attempt": ctx.attempt,
        "dispatch": ctx.dispatch,
        "pid": os.getpid(),
        "pgid": os.getpgid(0),
        "at": time.time(),
    }
    os.write(_descriptor(directory), (json.dumps(start) + "\n").encode())


def _descriptor(directory: str) -> int:
    pid = os.getpid()
    with _lock:
        if pid not in _files:
            path = os.path.join(directory, f"starts-{pid}.jsonl")
            _files[pid] = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        return _files[pid]


@job(NOOP)
def noop() -> None:
    """demo.noop, its start recorded."""
    record_start()
    demo.noop()


@job(SLEEP)
def sleep(seconds: float = 1.0, steps: int = 1) -> dict[str, Any]:
    """demo.sleep (progress after each step), its start recorded."""
    record_start()
    return demo.sleep(seconds, steps)


@job(FAIL)
def fail(times: int = 1) -> dict[str, Any]:
    """demo.fail (fails the first ``times`` attempts), its start recorded."""
    record_start()
    return demo.fail(times)
