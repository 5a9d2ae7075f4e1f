"""Carrying out a plan's timeline against a running platform and its private servers.

Killed processes are started again at once, as a supervisor would; so is a process
that exits on its own, which is recorded: no process should need a supervisor to
ride through these faults.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bench import harness as h
from bench.faultsuite import plan as p
from tests.private_servers import PrivateServers

#: The queue whose messages are deleted, and how long to wait for it to hold some.
QUEUE = "default"
BACKLOG_WAIT = 5.0


@dataclass
class Fleet:
    """The platform's restartable processes, by role."""

    workers: list[h.Proc]
    relays: list[h.Proc]
    apis: list[h.Proc]


@dataclass
class Record:
    """What the injector did: counts by kind, a log of events, the kills by group."""

    counts: Counter[str] = field(default_factory=Counter)
    events: list[dict[str, Any]] = field(default_factory=list)
    #: process group -> Unix time of its SIGKILL
    killed: dict[int, float] = field(default_factory=dict)
    #: processes that exited without being killed (name, exit status, last log lines)
    exits: list[dict[str, Any]] = field(default_factory=list)
    last_fault: float = 0.0  #: Unix time
    messages_deleted: int = 0


class Injector:
    """Strikes each fault of a timeline at its time; see ``run``."""

    def __init__(
        self,
        platform: h.Platform,
        servers: PrivateServers,
        fleet: Fleet,
        *,
        threads: int,
        rng: random.Random,
        say: Callable[[str], None],
    ) -> None:
        self.platform, self.servers, self.fleet = platform, servers, fleet
        self.threads = threads
        self.rng = rng
        self.say = say
        self.record = Record()
        self._actions: dict[str, Callable[[], str]] = {
            p.KILL_WORKER: self.kill_worker,
            p.KILL_RELAY: self.kill_relay,
            p.PG_RESTART: lambda: self.restart_postgres("fast"),
            p.PG_CRASH: lambda: self.restart_postgres("immediate"),
            p.REDIS_RESTART: self.restart_redis,
            p.REDIS_READ_ONLY: self.read_only,
            p.REDIS_WRITABLE: self.writable,
            p.DELETE_HALF: self.delete_half,
        }

    def run(self, timeline: list[p.Fault], started: float) -> Record:
        """Strike every fault at ``started`` + its time (Unix seconds); returns the record."""
        for fault in timeline:
            while time.time() < started + fault.at:
                self.restart_exited()
                time.sleep(min(0.1, max(0.0, started + fault.at - time.time())))
            detail = self._actions[fault.kind]()
            now = time.time()
            self.record.counts[fault.kind] += 1
            self.record.last_fault = now
            self.record.events.append(
                {"at": round(now - started, 2), "fault": fault.kind, "detail": detail}
            )
            if fault.kind not in (p.KILL_WORKER, p.KILL_RELAY):
                self.say(f"  t+{now - started:5.1f}s  {fault.kind}: {detail}")
        return self.record

    # -- processes ---------------------------------------------------------------------

    def kill_worker(self) -> str:
        victim = self.rng.randrange(len(self.fleet.workers))
        pgid = self._kill(self.fleet.workers[victim])
        self.fleet.workers[victim] = self.platform.start_worker(1, self.threads, wait=False)
        return f"worker {victim} (process group {pgid})"

    def kill_relay(self) -> str:
        victim = self.rng.randrange(len(self.fleet.relays))
        pgid = self._kill(self.fleet.relays[victim])
        self.fleet.relays[victim] = self.platform.start_relay(wait=False)
        return f"relay {victim} (process group {pgid})"

    def _kill(self, proc: h.Proc) -> int:
        """SIGKILL ``proc``'s process group (its pid is the group's id); returns it."""
        self.platform.procs.kill(proc)
        # Taken once the group is dead, not before the signal: a body that started in
        # the milliseconds between the two was still started by the killed process
        # (seen: a start 5 ms "after" its kill, counted as an unexplained duplicate).
        self.record.killed[proc.pid] = time.time()
        return proc.pid

    def restart_exited(self) -> None:
        """Record each process that exited on its own; start a worker or relay again.

        An API is not started again: the clients know only the ports of the first two.
        """
        for role, procs in (("worker", self.fleet.workers), ("relay", self.fleet.relays)):
            for n, proc in enumerate(procs):
                if not proc.alive():
                    self._exited(proc)
                    procs[n] = (
                        self.platform.start_worker(1, self.threads, wait=False)
                        if role == "worker"
                        else self.platform.start_relay(wait=False)
                    )
        for proc in list(self.fleet.apis):
            if not proc.alive():
                self._exited(proc)
                self.fleet.apis.remove(proc)

    def _exited(self, proc: h.Proc) -> None:
        status = proc.popen.returncode
        self.record.exits.append({"process": proc.name, "status": status, "log": proc.tail(5)})
        self.say(f"  {proc.name} exited on its own ({status})")
        self.platform.procs.kill(proc)  # reaps it and closes its log

    # -- servers -----------------------------------------------------------------------

    def restart_postgres(self, mode: str) -> str:
        took = self.servers.postgres.restart(mode)
        return f"down {took:.2f} s"

    def restart_redis(self) -> str:
        began = time.monotonic()
        self.servers.redis.restart()
        return f"down {time.monotonic() - began:.2f} s, every key gone"

    def read_only(self) -> str:
        self.servers.redis.make_read_only()
        return "REPLICAOF 127.0.0.1 1"

    def writable(self) -> str:
        self.servers.redis.make_writable()
        return "REPLICAOF NO ONE"

    def delete_half(self) -> str:
        """Delete half of the queue's waiting messages, once it holds some (up to 5 s)."""
        redis = self.servers.redis
        deadline = time.monotonic() + BACKLOG_WAIT
        while redis.queued(QUEUE) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        deleted = redis.delete_half_of_queue(QUEUE)
        self.record.messages_deleted += deleted
        return f"{deleted} message(s) of queue {QUEUE!r} deleted"
