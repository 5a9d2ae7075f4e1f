"""The figures of a fault run, the problems they show, as one table and as JSON."""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

from bench.faultsuite import plan as p
from bench.faultsuite.starts import Restart, Start, restarts

TERMINAL = ("completed", "failed", "cancelled", "skipped")
SAMPLES = 10  #: examples kept of each kind of problem


@dataclass(frozen=True)
class TaskRow:
    """What the run reads back of each task at the end."""

    id: str
    type: str
    status: str
    params: dict[str, Any]
    attempts: int
    retry_count: int
    dispatch: int
    error: str | None
    idempotency_key: str | None


@dataclass
class Figures:
    """Everything the table and the JSON file show (seconds for times)."""

    plan: str
    seed: int
    submitted: int
    accepted: int
    not_accepted: int
    completed: int
    failed_expected: int
    failed_unexpected: int
    lost: int
    answers_naming_another_task: int
    body_starts: int
    restarts_explained: int
    unexplained_duplicates: int
    client_errors: dict[str, int]
    faults: dict[str, int]
    messages_deleted: int
    processes_exited_on_their_own: int
    last_fault_at: float  #: seconds after the first submission
    last_accepted_at: float  #: seconds after the first submission
    drain_seconds: float | None  #: last fault -> every task terminal; None: not by the deadline
    drain_target: float
    samples: dict[str, list[Any]] = field(default_factory=dict)
    #: every fault struck: seconds after the first submission, kind, what it did
    timeline: list[dict[str, Any]] = field(default_factory=list)

    def problems(self) -> list[str]:
        """What makes the run fail; empty when the platform kept its promise."""
        found = []
        if self.lost:
            found.append(f"{self.lost} accepted task(s) lost (not terminal, or absent)")
        if self.unexplained_duplicates:
            found.append(f"{self.unexplained_duplicates} unexplained duplicate start(s)")
        if self.failed_unexpected:
            found.append(f"{self.failed_unexpected} task(s) failed for no reason of their own")
        if self.not_accepted:
            found.append(f"{self.not_accepted} submission(s) never accepted by the API")
        if self.answers_naming_another_task:
            found.append(f"{self.answers_naming_another_task} retried key(s) got another task")
        if self.server_errors:
            found.append(f"{self.server_errors} answer(s) 5xx other than 503 with Retry-After")
        if self.processes_exited_on_their_own:
            found.append(f"{self.processes_exited_on_their_own} process(es) exited on their own")
        return found

    @property
    def server_errors(self) -> int:
        """Answers a retrying client cannot tell from a bug: 5xx but a 503 that says
        when to try again (a database restart should give those, never a 500)."""
        return sum(
            count
            for status, count in self.client_errors.items()
            if status.startswith("5") and status != "503"
        )

    def targets(self) -> dict[str, bool]:
        settled = self.settled_seconds
        return {
            "lost 0": self.lost == 0,
            "unexplained duplicate starts 0": self.unexplained_duplicates == 0,
            f"terminal within {self.drain_target:g} s of the last fault": (
                settled is not None and settled <= self.drain_target
            ),
        }

    @property
    def settled_seconds(self) -> float | None:
        """Seconds to drain after the last fault, or after the last acceptance when the
        clients were still submitting then: the tail of the load is not recovery."""
        if self.drain_seconds is None:
            return None
        return self.drain_seconds - max(0.0, self.last_accepted_at - self.last_fault_at)

    def to_json(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "settled_seconds": self.settled_seconds,
            "problems": self.problems(),
            "targets": self.targets(),
        }

    def table(self) -> str:
        drain = "not by the deadline"
        if self.drain_seconds is not None and self.settled_seconds is not None:
            drain = f"{self.drain_seconds:.1f} s; {self.settled_seconds:.1f} s after the later"
            drain += " of it and the last acceptance"
        errors = ", ".join(f"{k}: {v}" for k, v in sorted(self.client_errors.items())) or "none"
        rows = [
            ("submitted", f"{self.submitted}"),
            ("accepted by the API", f"{self.accepted} (never accepted: {self.not_accepted})"),
            ("completed", f"{self.completed}"),
            ("failed, expected (chaos.fail)", f"{self.failed_expected}"),
            ("failed, unexpected", f"{self.failed_unexpected}"),
            ("lost", f"{self.lost}"),
            ("body starts", f"{self.body_starts} ({self.restarts_explained} explained restarts)"),
            ("unexplained duplicate starts", f"{self.unexplained_duplicates}"),
            ("client errors by status", errors),
            ("processes exited on their own", f"{self.processes_exited_on_their_own}"),
            ("messages deleted from the queue", f"{self.messages_deleted}"),
            ("last fault", f"t+{self.last_fault_at:.1f} s"),
            ("last submission accepted", f"t+{self.last_accepted_at:.1f} s"),
            ("time to drain after the last fault", f"{drain} (target {self.drain_target:g} s)"),
        ]
        width = max(len(label) for label, _ in rows)
        lines = [f"  {label:<{width}}  {value}" for label, value in rows]
        lines.append("  faults: " + ", ".join(f"{n} x {kind}" for kind, n in self.faults.items()))
        for target, met in self.targets().items():
            lines.append(f"  target {target}: {'met' if met else 'MISSED'}")
        return "\n".join(lines)


@dataclass
class Observed:
    """The raw material of a run's figures."""

    accepted: dict[int, str]  #: submission index -> task id
    given_up: dict[int, str]
    client_errors: Counter[str]
    rows: list[TaskRow]
    starts: list[Start]
    killed: dict[int, float]
    faults: Counter[str]
    messages_deleted: int
    exits: list[dict[str, Any]]
    events: list[dict[str, Any]]
    key_prefix: str
    last_fault_at: float
    last_accepted_at: float
    drain_seconds: float | None


def measure(plan: p.Plan, seed: int, seen: Observed) -> Figures:
    """The figures of a run from what it observed."""
    rows = {row.id: row for row in seen.rows}
    by_key = {row.idempotency_key: row.id for row in seen.rows}
    lost = sorted(
        {task for task in seen.accepted.values() if task not in rows}
        | {row.id for row in seen.rows if row.status not in TERMINAL}
    )
    mismatched = [
        index
        for index, task in seen.accepted.items()
        if by_key.get(f"{seen.key_prefix}-{index}", task) != task
    ]
    failed = [row for row in seen.rows if row.status == "failed"]
    # chaos.fail may end failed on purpose, or for "worker lost" with its one retry
    # spent on a kill: either is its own doing. Any other type should complete.
    unexpected = [row for row in failed if row.type != p.FAIL]

    def failed_on_purpose(start: Start) -> bool:
        row = rows.get(start.task)
        return row is not None and row.type == p.FAIL and start.attempt <= row.params["times"]

    found = restarts(seen.starts, seen.killed, failed_on_purpose)
    unexplained = [restart for restart in found if not restart.explained]
    return Figures(
        plan=plan.name,
        seed=seed,
        submitted=plan.jobs,
        accepted=len(seen.accepted),
        not_accepted=len(seen.given_up),
        completed=sum(row.status == "completed" for row in seen.rows),
        failed_expected=len(failed) - len(unexpected),
        failed_unexpected=len(unexpected),
        lost=len(lost),
        answers_naming_another_task=len(mismatched),
        body_starts=len(seen.starts),
        restarts_explained=len(found) - len(unexplained),
        unexplained_duplicates=len(unexplained),
        client_errors=dict(seen.client_errors),
        faults=dict(seen.faults),
        messages_deleted=seen.messages_deleted,
        processes_exited_on_their_own=len(seen.exits),
        last_fault_at=seen.last_fault_at,
        last_accepted_at=seen.last_accepted_at,
        drain_seconds=seen.drain_seconds,
        drain_target=plan.drain_target,
        samples={
            "lost": [_describe(rows.get(task), task) for task in lost[:SAMPLES]],
            "failed_unexpected": [_describe(row, row.id) for row in unexpected[:SAMPLES]],
            "unexplained_duplicates": [_pair(r, rows) for r in unexplained[:SAMPLES]],
            "never_accepted": list(seen.given_up.values())[:SAMPLES],
            "exits": seen.exits[:SAMPLES],
        },
        timeline=seen.events,
    )


def _describe(row: TaskRow | None, task: str) -> dict[str, Any]:
    if row is None:
        return {"task": task, "status": "absent from the database"}
    return {
        "task": row.id,
        "type": row.type,
        "status": row.status,
        "attempts": row.attempts,
        "retries": row.retry_count,
        "dispatch": row.dispatch,
        "error": (row.error or "")[:200],
    }


def _pair(restart: Restart, rows: dict[str, TaskRow]) -> dict[str, Any]:
    return {
        **_describe(rows.get(restart.later.task), restart.later.task),
        "earlier": asdict(restart.earlier),
        "later": asdict(restart.later),
    }
