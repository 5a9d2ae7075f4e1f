"""Printing for people (aligned, colored tables) and for scripts (JSON).

What the API sent is printed for people through ``jobplane.cli.terminal``: a control
character in a task's fields never reaches the terminal as itself.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import click

from jobplane.cli.terminal import lines, one_line

STATUS_COLORS = {
    "pending": "yellow",
    "running": "cyan",
    "completed": "green",
    "failed": "red",
    "cancelled": "magenta",
}
COLUMNS = [
    ("taskId", "ID"),
    ("taskType", "TYPE"),
    ("queue", "QUEUE"),
    ("status", "STATUS"),
    ("percent", "%"),
    ("attempts", "ATTEMPTS"),
    ("createdAt", "CREATED"),
]


def print_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=True))


def show(answer: Any, as_json: bool, for_people: Callable[[Any], None]) -> None:
    """JSON for scripts (``--json``), else ``for_people``'s rendering."""
    if as_json:
        print_json(answer)
    else:
        for_people(answer)


def print_task_table(page: dict[str, Any]) -> None:
    rows = [
        [one_line(task.get(key) if task.get(key) is not None else "") for key, _ in COLUMNS]
        for task in page["tasks"]
    ]
    headers = [title for _, title in COLUMNS]
    widths = [max(len(cell) for cell in column) for column in zip(headers, *rows, strict=False)]
    click.secho("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)), bold=True)
    status_at = [key for key, _ in COLUMNS].index("status")
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=True)]
        cells[status_at] = click.style(
            cells[status_at], fg=STATUS_COLORS.get(row[status_at].strip())
        )
        click.echo("  ".join(cells))
    shown = len(rows)
    total = f"about {page['total']}" if page.get("totalIsEstimate") else page["total"]
    click.echo(f"{shown} of {total} task(s), page {page['page']}")


def print_task(task: dict[str, Any]) -> None:
    width = max(len(key) for key in task)
    for key, value in task.items():
        if isinstance(value, (dict, list)):
            value = json.dumps(value)  # ASCII: JSON escapes every control character
        text = "" if value is None else one_line(value)
        if key == "status":
            text = click.style(text, fg=STATUS_COLORS.get(text), bold=True)
        click.echo(f"{one_line(key).ljust(width)}  {text}")


LEVEL_COLORS = {"WARNING": "yellow", "ERROR": "red", "CRITICAL": "red"}


def print_log(page: dict[str, Any]) -> None:
    for line in page["lines"]:
        level = click.style(one_line(line["level"]).ljust(8), fg=LEVEL_COLORS.get(line["level"]))
        click.echo(f"{one_line(line['createdAt'])}  {level}  {lines(line['message'])}")
    click.echo(f"{len(page['lines'])} of {page['total']} line(s), page {page['page']}")


OUTCOME_STYLE = {
    "enqueued": ("enqueued now", "green"),
    "would_enqueue": ("would enqueue", "green"),
    "already_recorded": ("ran / recorded", None),
    "skipped_late": ("recorded skipped", "yellow"),
    "not_due": ("not due yet", "cyan"),
    "not_scheduled_today": ("not scheduled today", None),
}


def print_schedules(schedules: list[dict[str, Any]]) -> None:
    if not schedules:
        click.echo("no schedules are declared")
        return
    for s in schedules:
        last = s["lastRun"]
        last_text = f"{last['status']} ({last['fireTime'] or 'run now'})" if last else "never"
        click.secho(one_line(s["name"]), bold=True)
        click.echo(one_line(f"  cron {s['cron']}  ({s['timezone']}, misfire={s['misfire']})"))
        click.echo(one_line(f"  next {s['nextFireTime'] or 'never'}   last {last_text}"))
        if s["missedCount"] or s["skippedCount"]:
            click.secho(f"  missed {s['missedCount']}, skipped {s['skippedCount']}", fg="yellow")


def print_catch_up(runs: list[dict[str, Any]], *, dry_run: bool, now: str | None) -> None:
    """Per schedule, each planned time in its own timezone and what happened; a summary."""
    title = "catch-up (dry run: nothing written)" if dry_run else "catch-up"
    click.secho(one_line(f"{title} as of {now or 'now'}"), bold=True)
    current = None
    for run in runs:
        if run["schedule"] != current:
            current = run["schedule"]
            click.echo("")
            click.secho(one_line(current), bold=True)
        label, color = OUTCOME_STYLE.get(run["outcome"], (run["outcome"], None))
        when = one_line(run["fireTime"] or "-")
        task = one_line(f"  task {run['taskId']}") if run.get("taskId") else ""
        reason = one_line(f"  ({run['reason']})") if run["reason"] else ""
        click.echo(f"  {when}  " + click.style(one_line(label), fg=color) + reason + task)
    counts: dict[str, int] = {}
    for run in runs:
        counts[run["outcome"]] = counts.get(run["outcome"], 0) + 1
    click.echo("")
    summary = ", ".join(
        f"{OUTCOME_STYLE.get(o, (o, None))[0]}: {n}" for o, n in sorted(counts.items())
    )
    click.secho(one_line(f"summary: {summary or 'no schedules'}"), bold=True)
