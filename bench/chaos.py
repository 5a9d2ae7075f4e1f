"""The fault suite: every fault a database or broker gives, and no accepted job lost.

On a PostgreSQL cluster and a Redis server of its own (never the shared ones), with
2 APIs, 2 relays and 3 worker processes, submits 10,000 jobs over 60 s (mostly
``chaos.noop``, some ``chaos.sleep`` with progress, a few ``chaos.fail``: the demo
jobs, recording each start of their body) from client threads, one request per job
with an Idempotency-Key, retrying on 5xx and connection errors. Meanwhile it SIGKILLs
a random worker every 3 s and a relay every 7 s (and starts them again), restarts
PostgreSQL three times (once ``-m immediate``), restarts Redis once without
persistence, makes Redis read-only for 10 s, and deletes half of a queue's messages
while the broker epoch survives. Then it waits for every task to end and prints one
table (the same figures go to a JSON file). It exits 1 on any lost task, unexplained
duplicate start, unexpected failure, submission never accepted, 5xx answer other than
a 503 with Retry-After, or process that exited on its own.

    .venv/bin/python bench/chaos.py [--short] [--jobs N] [--duration S] [--seed N]
                                    [--json PATH] [--keep-logs]

``--short`` is the variant ``make test`` runs (tests/e2e/test_chaos_short.py): 1,000
jobs over 15 s, one PostgreSQL restart, one Redis restart, the kills.
"""

from __future__ import annotations

import argparse
import random
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import harness as h  # noqa: E402
from bench.faultsuite import plan as p  # noqa: E402
from bench.faultsuite.run import run, write_json  # noqa: E402


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--short", action="store_true", help="the make test variant")
    parser.add_argument("--jobs", type=int, help="jobs to submit (default: the plan's)")
    parser.add_argument("--duration", type=float, help="seconds of submission and faults")
    parser.add_argument("--seed", type=int, default=None, help="chooses the kill victims")
    parser.add_argument("--json", type=Path, default=None, help="where the figures go")
    parser.add_argument("--keep-logs", action="store_true", help="keep logs of a passing run")
    return parser.parse_args()


def chosen_plan(args: argparse.Namespace) -> p.Plan:
    plan = p.SHORT if args.short else p.FULL
    changes = {"jobs": args.jobs, "duration": args.duration}
    return plan.scaled(**{k: v for k, v in changes.items() if v is not None})


def main() -> int:
    args = parse_args()
    plan = chosen_plan(args)
    seed = args.seed if args.seed is not None else random.randrange(1_000_000)
    h.exit_on_sigterm()
    signal.signal(signal.SIGINT, signal.default_int_handler)
    log_dir = Path(tempfile.mkdtemp(prefix="jobplane-chaos-"))
    stamp = time.strftime("%Y%m%d-%H%M%S")
    default_json = Path(tempfile.gettempdir()) / f"jobplane-chaos-{plan.name}-{stamp}.json"
    json_path = args.json or default_json
    print(
        f"chaos ({plan.name}): {plan.jobs} jobs over {plan.duration:g} s, seed {seed}; "
        f"{len(plan.timeline())} faults; logs in {log_dir}"
    )
    try:
        figures, signs = run(plan, log_dir=log_dir, seed=seed)
    except h.BenchError as error:
        print(f"chaos run failed: {error}; process logs kept in {log_dir}", file=sys.stderr)
        return 1
    print(figures.table())
    print("  log lines: " + ", ".join(f"{name} {n}" for name, n in signs.items()))
    problems = figures.problems()
    for problem in problems:
        print(f"FAILED: {problem}")
    write_json(json_path, figures, signs)
    print(f"figures written to {json_path}")
    ok = not problems
    if ok and not args.keep_logs:
        shutil.rmtree(log_dir, ignore_errors=True)
    elif not ok:
        print(f"process logs kept in {log_dir}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
