"""The short fault run: real processes on private servers, faults, no job lost.

The same implementation as ``make chaos`` (``bench/faultsuite``), smaller: 1,000 jobs
over 15 s with 2 APIs, 2 relays and 3 workers, a worker SIGKILLed every 3 s and a
relay every 7 s, one PostgreSQL restart and one Redis restart without persistence.
Its PostgreSQL cluster and Redis server are its own (``tests/private_servers.py``):
the shared servers other test runs use are never touched. A failing run prints its
seed; ``bench/chaos.py --short --seed N`` runs it again with the same kill victims.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from bench.faultsuite import plan
from bench.faultsuite.run import run


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_short_fault_run_loses_no_accepted_job_and_starts_none_twice_unexplained(
    tmp_path: Path,
) -> None:
    # Given a platform of real processes on servers of the test's own, under load
    seed = random.randrange(1_000_000)
    print(f"fault run seed {seed}; logs in {tmp_path}")

    # When workers and relays are killed and PostgreSQL and Redis restart meanwhile
    figures, log_lines = run(plan.SHORT, log_dir=tmp_path, seed=seed)

    # Then every accepted job ended, none ran twice without a reason, none failed unduly
    details = f"\n{figures.table()}\n{json.dumps(figures.samples, indent=1)}\nlogs: {log_lines}"
    assert figures.accepted == figures.submitted, details
    assert figures.lost == 0, details
    assert figures.unexplained_duplicates == 0, details
    assert figures.problems() == [], details
