"""``jobplane schedules …``: list schedules, run one now, catch up (through the API)."""

from __future__ import annotations

from datetime import datetime

import click

from jobplane.cli.admin import _connection_options
from jobplane.cli.client import connect, fail
from jobplane.cli.output import print_catch_up, print_schedules, print_task, show


@click.group()
def schedules() -> None:
    """List schedules, run one now, catch up missed runs."""


@schedules.command("ls")
@_connection_options
def list_schedules(url: str | None, token: str | None, as_json: bool) -> None:
    """List schedules with their next and last runs."""
    with connect(url, token) as client:
        answer = client.schedules()
    show(answer, as_json, lambda a: print_schedules(a["schedules"]))


@schedules.command("run")
@click.argument("name")
@_connection_options
def run_schedule(name: str, url: str | None, token: str | None, as_json: bool) -> None:
    """Run schedule NAME now, as a normal task."""
    with connect(url, token) as client:
        task = client.run_schedule(name)
    show(task.raw, as_json, print_task)


@schedules.command("catch-up")
@click.option("--dry-run", is_flag=True, help="say what would happen; write nothing")
@click.option(
    "--now",
    "now",
    default=None,
    help="with --dry-run: evaluate as of this ISO-8601 time (with offset), inside the "
    "catch-up window",
)
@_connection_options
def catch_up(
    dry_run: bool, now: str | None, url: str | None, token: str | None, as_json: bool
) -> None:
    """Enqueue (or record skipped) every run the schedules missed."""
    moment = None
    if now is not None:
        if not dry_run:
            fail("--now is only for a dry run (add --dry-run): catch-up records runs as of now", 2)
        try:
            moment = datetime.fromisoformat(now)
        except ValueError:
            fail(f"--now must be an ISO-8601 time, got {now!r}", 2)
        if moment.tzinfo is None:
            fail("--now needs a UTC offset, e.g. 2025-12-16T19:41:00+08:00", 2)
    with connect(url, token) as client:
        answer = client.catch_up(dry_run=dry_run, now=moment)
    show(answer, as_json, lambda a: print_catch_up(a["runs"], dry_run=dry_run, now=now))
