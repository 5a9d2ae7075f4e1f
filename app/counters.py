"""The counters relays, sweepers and workers push through the database for /metrics.

Each is a name, a help text and at most one label; ``store.stats.add_to_counters`` adds to
them in the writer's own transaction, so a counter moves exactly when the work it
counts is committed.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CounterSpec:
    name: str
    help: str
    label: str | None = None


RELAY_PUBLISHED = CounterSpec("jobplane_relay_published", "Messages published by relays.")
RELAY_ERRORS = CounterSpec(
    "jobplane_relay_errors", "Relay batches that failed (broker or database unreachable)."
)
SWEEPER_RECOVERIES = CounterSpec(
    "jobplane_sweeper_recoveries", "Tasks recovered by sweepers, by kind.", label="kind"
)

ALL = (RELAY_PUBLISHED, RELAY_ERRORS, SWEEPER_RECOVERIES)
