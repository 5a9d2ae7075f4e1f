"""Body starts, as the suite's jobs record them, and which second starts are explained.

A task's body may start again only for a reason the run can name: the worker process
that ran the earlier start was SIGKILLed by the suite between the two starts, or the earlier
attempt failed on purpose (a ``chaos.fail`` attempt within its ``times``). Any other
second start is a job run twice: unexplained.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Start:
    """One start of a task's body: in which attempt, dispatch and worker process."""

    task: str
    attempt: int
    dispatch: int
    pid: int
    pgid: int
    at: float  #: Unix time, seconds


@dataclass(frozen=True)
class Restart:
    """A start after an earlier one of the same task, and whether the run explains it."""

    earlier: Start
    later: Start
    why: str | None  #: None: unexplained

    @property
    def explained(self) -> bool:
        return self.why is not None


def read_starts(directory: Path) -> list[Start]:
    """Every start recorded in ``directory`` (a line cut short by a SIGKILL is skipped)."""
    starts = []
    for path in sorted(directory.glob("starts-*.jsonl")):
        for line in path.read_text().splitlines():
            try:
                starts.append(Start(**json.loads(line)))
            except (ValueError, TypeError):
                continue
    return starts


def restarts(
    starts: Iterable[Start],
    killed: dict[int, float],
    failed_on_purpose: Callable[[Start], bool],
) -> list[Restart]:
    """Each later start of a task, with why it happened.

    ``killed``: process group -> Unix time the suite SIGKILLed it.
    ``failed_on_purpose``: whether a start's attempt raised by design.
    """
    by_task: dict[str, list[Start]] = defaultdict(list)
    for start in starts:
        by_task[start.task].append(start)
    found = []
    for runs in by_task.values():
        runs.sort(key=lambda start: (start.at, start.attempt))
        for earlier, later in zip(runs, runs[1:], strict=False):
            found.append(Restart(earlier, later, _why(earlier, later, killed, failed_on_purpose)))
    return found


def _why(
    earlier: Start,
    later: Start,
    killed: dict[int, float],
    failed_on_purpose: Callable[[Start], bool],
) -> str | None:
    if later.attempt <= earlier.attempt:
        return None  # two starts of one attempt: a claim that was not exclusive
    kill = killed.get(earlier.pgid)
    if kill is not None and earlier.at <= kill <= later.at:
        return "its worker was SIGKILLed"
    if failed_on_purpose(earlier):
        return "the earlier attempt failed on purpose"
    return None
