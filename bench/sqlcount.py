"""Count the SQL statements and Redis commands the platform spends per job.

    .venv/bin/python bench/sqlcount.py [--jobs 500]

Starts api + relay + worker on a fresh database with ``log_statement = 'all'`` set
on that database only (``ALTER DATABASE``), each process's connections named by
``application_name``; submits ``--jobs`` demo.noop jobs over HTTP; then reads the
statements back from PostgreSQL's server log (``BENCH_PG_LOG``, default Debian's
``/var/log/postgresql/postgresql-15-main.log``; root or the postgres user can read
it) and Redis's ``MONITOR`` stream of the platform's Redis db, and prints counts per
job by process and by statement. Timing figures of such a run mean nothing.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import harness as h  # noqa: E402
from bench.e2e import NOOP, burst, http_submitter  # noqa: E402

REDIS_DB = int(os.environ.get("BENCH_SQLCOUNT_REDIS_DB", "14"))
PG_LOG = Path(os.environ.get("BENCH_PG_LOG", "/var/log/postgresql/postgresql-15-main.log"))
LINE = re.compile(
    r"^\S+ \S+ \S+ \[(?P<pid>\d+)\] \S+@(?P<db>\S+) LOG:  "
    r"(?:statement|execute (?P<name>[^:]*)): (?P<sql>.*)$"
)


def kind(sql: str) -> str:
    """A short name for a statement: its verb and table (and what a bare SELECT is)."""
    text = " ".join(sql.split())
    upper = text.upper()
    for verb, pattern in (
        ("INSERT INTO", r"INSERT INTO (\w+)"),
        ("UPDATE", r"UPDATE (\w+)"),
        ("DELETE FROM", r"DELETE FROM (\w+)"),
    ):
        if upper.startswith(verb):
            match = re.match(pattern, text, re.IGNORECASE)
            return f"{verb.split()[0]} {match.group(1) if match else '?'}"
    if upper in (";", "SELECT 1"):
        return f"{text} (SQLAlchemy pool_pre_ping)"
    if upper.startswith("SELECT"):
        tables = re.findall(r"\bFROM (\w+)", text, re.IGNORECASE)
        return "SELECT " + (",".join(dict.fromkeys(tables)) if tables else text[7:40])
    return text.split()[0].upper() if text else "(empty)"


class RedisMonitor(threading.Thread):
    """Counts the commands sent to one Redis db (Dramatiq's Lua dispatch by command)."""

    def __init__(self, db: int) -> None:
        super().__init__(daemon=True)
        self.db = db
        self.counts: Counter[str] = Counter()
        self.by_client: dict[str, Counter[str]] = defaultdict(Counter)
        self.stopped = threading.Event()

    def run(self) -> None:
        client = h.redis_client(self.db)
        with client.monitor() as monitor:
            for command in monitor.listen():
                if self.stopped.is_set():
                    return
                if int(command.get("db", -1)) != self.db:
                    continue
                words = command["command"].split()
                name = words[0].upper() if words else "?"
                if name == "EVALSHA" and len(words) > 4:
                    # Dramatiq's Lua dispatch: EVALSHA sha 1 <namespace> <command> ...
                    name = f"EVALSHA (Dramatiq {words[4].strip(chr(34))})"
                if command.get("client_type") == "lua":
                    name = f"  inside Lua: {name}"
                self.counts[name] += 1
                self.by_client[f"{command.get('client_address')}:{command.get('client_port')}"][
                    name
                ] += 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=500)
    parser.add_argument("--clients", type=int, default=16)
    args = parser.parse_args()
    h.exit_on_sigterm()
    if not os.access(PG_LOG, os.R_OK):
        print(f"cannot read PostgreSQL's log at {PG_LOG}; set BENCH_PG_LOG", file=sys.stderr)
        return 1
    log_dir = Path(tempfile.mkdtemp(prefix="jobplane-sqlcount-"))
    procs = h.Procs(log_dir)
    redis = h.claim_redis_db(REDIS_DB)
    db = h.ScratchDatabase("jobplane_sqlcount")
    monitor = RedisMonitor(REDIS_DB)
    try:
        platform = h.Platform(procs, db, REDIS_DB, app_names=True)
        platform.migrate()
        h.admin(f"ALTER DATABASE \"{db.name}\" SET log_statement = 'all'")
        platform.start_api()
        platform.start_relay()
        platform.start_worker(processes=1, threads=8)
        backends: dict[int, str] = {}

        def note_backends() -> None:
            for pid, name in db.query(
                "SELECT pid, application_name FROM pg_stat_activity WHERE datname = %s",
                (db.name,),
            ):
                backends[pid] = name or "?"

        note_backends()
        start_offset = PG_LOG.stat().st_size
        monitor.start()
        time.sleep(0.5)
        since = time.time()
        result = burst(args.jobs, args.clients, http_submitter(platform.api_port or 0, NOOP))
        if result.errors:
            raise h.BenchError(result.errors[0])

        def done() -> bool:
            note_backends()
            return platform.status_counts(since).get("completed", 0) >= args.jobs

        h.wait_for(done, timeout=300, interval=0.2, what="the jobs to complete")
        time.sleep(0.3)
        monitor.stopped.set()
        redis.ping()  # one more command wakes the monitor so it sees the stop
        end_offset = PG_LOG.stat().st_size
        print_sql(db.name, backends, start_offset, end_offset, args.jobs)
        print_redis(monitor, args.jobs)
        return 0
    except h.BenchError as error:
        print(f"sqlcount failed: {error}", file=sys.stderr)
        return 1
    finally:
        monitor.stopped.set()
        procs.close()
        db.drop()
        redis.flushdb()
        shutil.rmtree(log_dir, ignore_errors=True)


def print_sql(database: str, backends: dict[int, str], start: int, end: int, jobs: int) -> None:
    with PG_LOG.open("rb") as log:
        log.seek(start)
        text = log.read(end - start).decode(errors="replace")
    counts: dict[str, Counter[str]] = defaultdict(Counter)
    connections: dict[str, set[int]] = defaultdict(set)
    examples: dict[str, str] = {}
    for pid, db, sql in records(text):
        process = backends.get(pid, "?")
        if db != database or process == "bench":
            continue
        statement = kind(sql)
        counts[process][statement] += 1
        connections[process].add(pid)
        examples.setdefault(statement, " ".join(sql.split())[:200])
    print(f"SQL statements per job ({jobs} demo.noop jobs; BEGIN/COMMIT included):")
    print(
        "  ('?': connections that came and went between two looks at pg_stat_activity,\n"
        "   i.e. opened and closed during the run: a pool's overflow connections)"
    )
    for process in sorted(counts):
        total = sum(counts[process].values())
        print(
            f"  {process}: {total / jobs:.2f} per job, on {len(connections[process])} "
            "server connection(s)"
        )
        for statement, count in counts[process].most_common():
            print(f"    {count / jobs:6.2f}  {statement}")
    print("examples:")
    for statement, sql in examples.items():
        print(f"  {statement}: {sql}")


def records(text: str) -> list[tuple[int, str, str]]:
    """(backend pid, database, statement) of each logged statement, continuation lines joined."""
    found: list[tuple[int, str, str]] = []
    for line in text.splitlines():
        if line.startswith("\t") and found:
            pid, db, sql = found[-1]
            found[-1] = (pid, db, sql + " " + line.strip())
            continue
        match = LINE.match(line)
        if match:
            found.append((int(match["pid"]), match["db"], match["sql"]))
    return found


def print_redis(monitor: RedisMonitor, jobs: int) -> None:
    total = sum(monitor.counts.values())
    outside = sum(n for name, n in monitor.counts.items() if not name.startswith(" "))
    print(
        f"Redis commands per job: {outside / jobs:.2f} sent by clients ({total / jobs:.2f} "
        "counting those run inside Lua scripts)"
    )
    for name, count in monitor.counts.most_common():
        print(f"    {count / jobs:6.2f}  {name}")


if __name__ == "__main__":
    sys.exit(main())
