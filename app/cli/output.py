"""Printing for people (aligned, colored tables) and for scripts (JSON)."""

from __future__ import annotations

import json
from typing import Any

import click

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


def print_task_table(page: dict[str, Any]) -> None:
    rows = [
        [str(task.get(key) if task.get(key) is not None else "") for key, _ in COLUMNS]
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
    click.echo(f"{shown} of {page['total']} task(s), page {page['page']}")


def print_task(task: dict[str, Any]) -> None:
    width = max(len(key) for key in task)
    for key, value in task.items():
        if isinstance(value, (dict, list)):
            value = json.dumps(value)
        text = "" if value is None else str(value)
        if key == "status":
            text = click.style(text, fg=STATUS_COLORS.get(text), bold=True)
        click.echo(f"{key.ljust(width)}  {text}")


LEVEL_COLORS = {"WARNING": "yellow", "ERROR": "red", "CRITICAL": "red"}


def print_log(page: dict[str, Any]) -> None:
    for line in page["lines"]:
        level = click.style(line["level"].ljust(8), fg=LEVEL_COLORS.get(line["level"]))
        click.echo(f"{line['createdAt']}  {level}  {line['message']}")
    click.echo(f"{len(page['lines'])} of {page['total']} line(s), page {page['page']}")
