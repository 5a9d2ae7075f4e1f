"""A worker host and a scheduler leader cut off by a real network (``bench/partition.py``).

A network namespace stands for the other host; the cut is a veth going down, so packets
vanish without a reset, as in a real partition. Needs root and iproute2, as CI has here.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import partition


@pytest.mark.slow
def test_a_cut_off_worker_and_leader_are_replaced_and_the_worker_serves_again(
    tmp_path: Path,
) -> None:
    # Given a worker mid-job and the scheduler leader in a namespace, cut off for 10 s,
    # when the network comes back: the job completed on the host's worker with the cut-off
    # run's outcome discarded, the standby led, and the cut-off worker served again
    # (``run`` raises, saying which, when any of these did not happen)
    figures = partition.run(10.0, tmp_path)

    print(figures)  # the times, for the record (the targets are bench/README's)
    assert figures["cut_worker_served_again_s"] >= 0
