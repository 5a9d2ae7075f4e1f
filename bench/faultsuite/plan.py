"""What a fault run submits and when each fault strikes.

A plan is sizes and fractions of the submission window, so that one timeline serves
the full run (``FULL``: ``make chaos``) and the short one in ``make test`` (``SHORT``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

#: The suite's job types: demo.noop, demo.sleep and demo.fail that also record each
#: start of their body (``bench.faultsuite.jobs``, loaded through JOBPLANE_JOBS).
NOOP, SLEEP, FAIL = "chaos.noop", "chaos.sleep", "chaos.fail"
JOBS_MODULE = "bench.faultsuite.jobs"
#: The directory those jobs record body starts in (an environment variable).
STARTS_DIR_ENV = "BENCH_CHAOS_STARTS"
#: Retries of the jobs that should complete: a task whose worker is killed under it
#: several times in a row must not fail for lack of retries (a lost attempt counts).
RETRIES = 10
#: A failing job fails this many attempts: more than its retries, so it ends failed.
FAILS_FOR_GOOD = 99

#: Fault kinds, as the timeline and the report name them.
KILL_WORKER = "SIGKILL a worker"
KILL_RELAY = "SIGKILL a relay"
PG_RESTART = "PostgreSQL restart (-m fast)"
PG_CRASH = "PostgreSQL restart (-m immediate)"
REDIS_RESTART = "Redis restart (no persistence)"
REDIS_READ_ONLY = "Redis read-only"
REDIS_WRITABLE = "Redis writable again"
DELETE_HALF = "delete half of a queue's messages (epoch kept)"


@dataclass(frozen=True, order=True)
class Fault:
    """One fault at ``at`` seconds after the first submission."""

    at: float
    kind: str


@dataclass(frozen=True)
class Plan:
    """A fault run: how much load, for how long, and which faults on top of the kills.

    Fault times are fractions of ``duration`` (the submission window, seconds). Kills
    run every ``worker_kill_every`` / ``relay_kill_every`` s while jobs are submitted.
    """

    name: str
    jobs: int
    duration: float
    pg_restarts: tuple[tuple[float, str], ...] = ()
    redis_restarts: tuple[float, ...] = ()
    #: (start fraction, seconds read-only)
    redis_read_only: tuple[tuple[float, float], ...] = ()
    queue_deletions: tuple[float, ...] = ()
    worker_kill_every: float = 3.0
    relay_kill_every: float = 7.0
    apis: int = 2
    relays: int = 2
    workers: int = 3
    threads: int = 4  #: threads per worker process
    clients: int = 24  #: submitting client threads (each waits for its answer)
    #: Seconds a client keeps retrying one submission before it gives up.
    give_up_after: float = 120.0
    #: Seconds after the last fault a task may take to end before it counts as lost.
    drain_deadline: float = 300.0
    #: Recovery settings of every process (JOBPLANE_<NAME>): fast, as in the tests.
    settings: dict[str, str] = field(
        default_factory=lambda: {
            "heartbeat_interval": "0.5",
            "heartbeat_timeout": "3",
            "sweep_interval": "0.5",
            "unclaimed_after": "10",
        }
    )

    @property
    def heartbeat_timeout(self) -> float:
        return float(self.settings["heartbeat_timeout"])

    @property
    def drain_target(self) -> float:
        """Seconds after the last fault by which every task should be terminal."""
        return self.heartbeat_timeout + 30

    def timeline(self) -> list[Fault]:
        """Every fault of the run, in time order."""
        faults = [Fault(at, KILL_WORKER) for at in _every(self.worker_kill_every, self.duration)]
        faults += [Fault(at, KILL_RELAY) for at in _every(self.relay_kill_every, self.duration)]
        for at, mode in self.pg_restarts:
            kind = PG_CRASH if mode == "immediate" else PG_RESTART
            faults.append(Fault(at * self.duration, kind))
        faults += [Fault(at * self.duration, REDIS_RESTART) for at in self.redis_restarts]
        for at, seconds in self.redis_read_only:
            faults.append(Fault(at * self.duration, REDIS_READ_ONLY))
            faults.append(Fault(at * self.duration + seconds, REDIS_WRITABLE))
        faults += [Fault(at * self.duration, DELETE_HALF) for at in self.queue_deletions]
        return sorted(faults)

    def submission(self, index: int) -> dict[str, Any]:
        """The body of submission ``index``: mostly noop, some sleep, a few fail."""
        slot = index % 100
        if slot < 90:
            return {"type": NOOP, "maxRetries": RETRIES}
        if slot < 97:
            return {"type": SLEEP, "params": {"seconds": 0.5, "steps": 5}, "maxRetries": RETRIES}
        if slot % 2:
            return {"type": FAIL, "params": {"times": 1}, "maxRetries": RETRIES}
        return {"type": FAIL, "params": {"times": FAILS_FOR_GOOD}, "maxRetries": 1}

    def scaled(self, **changes: Any) -> Plan:
        """This plan with some fields changed (the CLI's --jobs, --duration …)."""
        return Plan(**{**self.__dict__, **changes})


def _every(interval: float, duration: float) -> list[float]:
    count = int(duration // interval)
    return [interval * n for n in range(1, count + 1)] if interval > 0 else []


#: ``make chaos``: 10,000 jobs over 60 s and every fault.
FULL = Plan(
    name="full",
    jobs=10_000,
    duration=60.0,
    pg_restarts=((0.15, "fast"), (0.5, "immediate"), (0.75, "fast")),
    redis_restarts=(0.62,),
    redis_read_only=((0.3, 10.0),),
    queue_deletions=(0.85,),
)

#: ``make test``: 1,000 jobs over 15 s, one PostgreSQL and one Redis restart, kills.
SHORT = Plan(
    name="short",
    jobs=1_000,
    duration=15.0,
    pg_restarts=((0.3, "fast"),),
    redis_restarts=(0.6,),
    give_up_after=60.0,
    drain_deadline=60.0,
)
