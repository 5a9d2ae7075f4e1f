"""Running a plan: private servers, a platform of real processes, load, faults, figures.

``run(plan)`` starts a PostgreSQL cluster and a Redis server of its own
(``tests.private_servers``), ``plan.apis`` APIs, ``plan.relays`` relays and
``plan.workers`` worker processes on them (``bench.harness``), submits the plan's jobs
while striking its faults, waits for every task to end, and returns the figures.
Servers and processes are gone when it returns, also when it fails.
"""

from __future__ import annotations

import json
import random
import re
import time
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg

from bench import harness as h
from bench.faultsuite import plan as p
from bench.faultsuite.clients import Submitters
from bench.faultsuite.faults import Fleet, Injector
from bench.faultsuite.report import Figures, Observed, TaskRow, measure
from bench.faultsuite.starts import read_starts
from tests.private_servers import PrivateServers, free_port

#: Seconds the bench's own queries keep trying while PostgreSQL is restarting.
QUERY_PATIENCE = 60.0
#: Lines worth counting in the processes' logs: they say what went wrong, and where.
LOG_SIGNS = {
    "exception in a thread": re.compile(r"Exception in thread"),
    "CRITICAL": re.compile(r"\bCRITICAL\b"),
    "NotInAJob": re.compile(r"NotInAJob"),
    "outcome not recorded": re.compile(r"could not record the outcome"),
    "READONLY": re.compile(r"ReadOnlyError|READONLY"),
}


def run(
    plan: p.Plan, *, log_dir: Path, seed: int, say: Callable[[str], None] = print
) -> tuple[Figures, dict[str, int]]:
    """Carry out ``plan``; returns its figures and the counts of ``LOG_SIGNS``."""
    starts_dir = log_dir / "starts"
    starts_dir.mkdir(parents=True, exist_ok=True)
    with PrivateServers() as servers:
        procs = h.Procs(log_dir)
        db = h.ScratchDatabase("jobplane_chaos", servers.postgres.admin_url)
        try:
            platform = h.Platform(
                procs,
                db,
                0,
                settings={**plan.settings, "jobs": p.JOBS_MODULE},
                broker_url=servers.redis.url(0),
                extra_env={p.STARTS_DIR_ENV: str(starts_dir)},
            )
            fleet = start_fleet(platform, plan)
            say(f"platform up: {plan.apis} APIs, {plan.relays} relays, {plan.workers} workers")
            seen = load_and_strike(plan, platform, servers, fleet, random.Random(seed), say)
            seen.starts = read_starts(starts_dir)
            figures, signs = measure(plan, seed, seen), scan_logs(log_dir)
            write_json(log_dir / "figures.json", figures, signs)
            return figures, signs
        finally:
            # SIGKILL, not a graceful stop: nothing is measured any more, and each
            # worker's shutdown grace would add seconds to every run.
            for proc in list(procs.running):
                procs.kill(proc)
            db.disconnect()


def start_fleet(platform: h.Platform, plan: p.Plan) -> Fleet:
    platform.migrate()
    # Relays and workers start together (each takes seconds to import), then are waited for.
    relays = [platform.start_relay(wait=False) for _ in range(plan.relays)]
    workers = [platform.start_worker(1, plan.threads, wait=False) for _ in range(plan.workers)]
    # Ports of the private servers' range: no other run's free_port() hands them out.
    apis = [platform.start_api(free_port()) for _ in range(plan.apis)]
    for relay in relays:
        h.wait_relay_ready(relay)
    for worker in workers:
        h.wait_worker_ready(worker, 1)
    return Fleet(workers=workers, relays=relays, apis=apis)


def load_and_strike(
    plan: p.Plan,
    platform: h.Platform,
    servers: PrivateServers,
    fleet: Fleet,
    rng: random.Random,
    say: Callable[[str], None],
) -> Observed:
    """Submit while the faults strike, then wait for every task to end."""
    key_prefix = f"chaos-{uuid.uuid4().hex[:8]}"
    submitters = Submitters(
        platform.api_ports,
        plan.submission,
        jobs=plan.jobs,
        duration=plan.duration,
        clients=plan.clients,
        give_up_after=plan.give_up_after,
        key_prefix=key_prefix,
    )
    injector = Injector(platform, servers, fleet, threads=plan.threads, rng=rng, say=say)
    started = submitters.start()
    record = injector.run(plan.timeline(), started)
    last_fault = record.last_fault or time.time()
    say(f"faults over at t+{last_fault - started:.1f}s; waiting for every task to end")
    drained = wait_drained(platform.db, submitters, injector, last_fault + plan.drain_deadline)
    return Observed(
        accepted=dict(submitters.accepted),
        given_up=dict(submitters.given_up),
        client_errors=Counter(submitters.errors),
        rows=read_tasks(platform.db),
        starts=[],
        killed=dict(record.killed),
        faults=Counter(record.counts),
        messages_deleted=record.messages_deleted,
        exits=list(record.exits),
        events=list(record.events),
        key_prefix=key_prefix,
        last_fault_at=last_fault - started,
        last_accepted_at=submitters.last_accepted - started,
        drain_seconds=None if drained is None else drained - last_fault,
    )


def wait_drained(
    db: h.ScratchDatabase, submitters: Submitters, injector: Injector, deadline: float
) -> float | None:
    """Until submissions are over and no task is pending or running: the Unix time then,
    or None at ``deadline``. Processes that exit meanwhile are started again."""
    last_report = time.time()
    while time.time() < deadline:
        live, total = query(
            db,
            "SELECT count(*) FILTER (WHERE status IN ('pending', 'running')), count(*) "
            "FROM jobplane_tasks",
        )[0]
        if submitters.done and live == 0 and total >= len(submitters.accepted):
            return time.time()
        injector.restart_exited()
        if time.time() - last_report >= 10:
            injector.say(f"  {live} of {total} tasks not done yet")
            last_report = time.time()
        time.sleep(0.25)
    return None


def read_tasks(db: h.ScratchDatabase) -> list[TaskRow]:
    rows = query(
        db,
        "SELECT id, type, status, params, attempts, retry_count, dispatch, error, "
        "idempotency_key FROM jobplane_tasks",
    )
    return [TaskRow(*row) for row in rows]


def query(db: h.ScratchDatabase, sql: str) -> list[Any]:
    """``db.query``, reconnecting while PostgreSQL restarts (up to ``QUERY_PATIENCE`` s)."""
    give_up = time.monotonic() + QUERY_PATIENCE
    while True:
        try:
            return db.query(sql)
        except psycopg.OperationalError:
            if time.monotonic() > give_up:
                raise
            db.disconnect()
            time.sleep(0.2)


def write_json(path: Path, figures: Figures, signs: dict[str, int]) -> None:
    """The figures, the problems, the targets and the log-line counts, as JSON."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({**figures.to_json(), "log_lines": signs}, indent=2))


def scan_logs(log_dir: Path) -> dict[str, int]:
    """How many lines of each of ``LOG_SIGNS`` the processes logged."""
    counts: Counter[str] = Counter()
    for path in log_dir.glob("*.log"):
        text = path.read_text(errors="replace")
        for name, pattern in LOG_SIGNS.items():
            counts[name] += len(pattern.findall(text))
    return {name: counts[name] for name in LOG_SIGNS}
