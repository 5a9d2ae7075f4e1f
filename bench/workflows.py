"""Workflow benchmark: what chains and groups cost against plain tasks, same run.

Starts a relay and a worker (1 process x 8 threads) on a fresh PostgreSQL database and
Redis db, and times, each from the commit of its submission to the commit of its end:

* plain: N ``demo.noop`` tasks enqueued in one transaction, until the last completed
  (the peer: the same work with no workflow around it);
* group: a group of the same N ``demo.noop`` steps, until the workflow completed;
* chord: that group with a ``demo.echo`` step after it taking the N results;
* chain: a chain of M ``demo.noop`` steps, against M single tasks each submitted once
  the one before completed (the peer of a chain's step-to-step hand-over).

Prints seconds, throughput and each ratio workflow/peer. ``--quick`` runs small counts.
See bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import harness as h  # noqa: E402
from jobplane import enqueue_many  # noqa: E402
from jobplane.db import make_engine  # noqa: E402
from jobplane.library import workflows  # noqa: E402
from jobplane.library.enqueue import NewTask  # noqa: E402
from jobplane.library.handles import TaskHandle  # noqa: E402
from jobplane.library.workflow_handles import WorkflowHandle  # noqa: E402
from jobplane.library.workflows import Step, chain, group  # noqa: E402
from jobplane.models import utcnow  # noqa: E402
from jobplane.service import Submission  # noqa: E402
from jobplane.settings import Settings  # noqa: E402

#: Apart from bench/e2e.py's dbs, so that both may run (not at once: figures would suffer).
REDIS_DB = int(os.environ.get("BENCH_WORKFLOWS_REDIS_DB", "9"))
NOOP = Step(Submission(type="demo.noop"))


def timed_workflow(engine: Any, node: workflows.Node, timeout: float) -> float:
    with engine.begin() as conn:
        start = time.perf_counter()
        submitted = workflows.submit(conn, node, Settings(), utcnow(), registered_only=False)
    WorkflowHandle(submitted.workflow_id, engine=engine).wait(timeout=timeout)
    return time.perf_counter() - start


def timed_plain(engine: Any, platform: h.Platform, count: int, timeout: float) -> float:
    before = platform.status_counts().get("completed", 0)
    with engine.begin() as conn:
        start = time.perf_counter()
        enqueue_many(conn, [NewTask("demo.noop") for _ in range(count)])
    h.wait_for(
        lambda: platform.status_counts().get("completed", 0) >= before + count,
        timeout=timeout,
        what="the plain tasks",
        interval=0.01,
    )
    return time.perf_counter() - start


def timed_sequence(engine: Any, count: int, timeout: float) -> float:
    start = time.perf_counter()
    for _ in range(count):
        with engine.begin() as conn:
            (task_id,) = enqueue_many(conn, [NewTask("demo.noop")])
        TaskHandle(task_id, engine=engine).wait(timeout=timeout)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small counts")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON too")
    args = parser.parse_args()
    members, links = (500, 20) if args.quick else (5_000, 100)

    h.claim_redis_db(REDIS_DB)
    db = h.ScratchDatabase("bench_workflows")
    with tempfile.TemporaryDirectory(prefix="bench-workflows-") as logs:
        procs = h.Procs(Path(logs))
        platform = h.Platform(procs, db, REDIS_DB, settings={"demo_jobs": "1"})
        try:
            platform.migrate()
            platform.start_relay()
            platform.start_worker(processes=1, threads=8)
            engine = make_engine(db.url)
            timed_plain(engine, platform, 200, 60)  # warm-up
            figures = {
                "plain_s": timed_plain(engine, platform, members, 600),
                "group_s": timed_workflow(engine, group([NOOP] * members), 600),
                "chord_s": timed_workflow(
                    engine,
                    group([NOOP] * members).then(
                        Step(Submission(type="demo.echo"), pipe_result=True)
                    ),
                    600,
                ),
                "sequence_s": timed_sequence(engine, links, 60),
                "chain_s": timed_workflow(engine, chain([NOOP] * links), 600),
            }
            engine.dispose()
        finally:
            procs.close()
            db.drop()

    rows = [
        [
            "plain tasks",
            str(members),
            f"{figures['plain_s']:.2f}",
            f"{members / figures['plain_s']:.0f}",
            "1.00",
        ],
        [
            "group",
            str(members),
            f"{figures['group_s']:.2f}",
            f"{members / figures['group_s']:.0f}",
            f"{figures['group_s'] / figures['plain_s']:.2f}",
        ],
        [
            "group + then",
            str(members + 1),
            f"{figures['chord_s']:.2f}",
            f"{members / figures['chord_s']:.0f}",
            f"{figures['chord_s'] / figures['plain_s']:.2f}",
        ],
        [
            "tasks one after another",
            str(links),
            f"{figures['sequence_s']:.2f}",
            f"{links / figures['sequence_s']:.0f}",
            "1.00",
        ],
        [
            "chain",
            str(links),
            f"{figures['chain_s']:.2f}",
            f"{links / figures['chain_s']:.0f}",
            f"{figures['chain_s'] / figures['sequence_s']:.2f}",
        ],
    ]
    print(f"machine: {json.dumps(h.machine())}")
    h.print_table(["workload", "steps", "seconds", "steps/s", "ratio to its peer"], rows)
    if args.json:
        print(json.dumps(figures))


if __name__ == "__main__":
    main()
