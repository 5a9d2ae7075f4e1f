"""``jobplane``: process commands (dev, api, relay, worker, migrate) and admin commands."""

from __future__ import annotations

import click

from app.cli import admin, processes, schedules


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """jobplane: durable background jobs behind an HTTP API."""


for command in (
    processes.dev,
    processes.api,
    processes.relay,
    processes.worker,
    processes.migrate,
    processes.scheduler,
    admin.submit,
    admin.tasks,
    admin.stats,
    schedules.schedules,
):
    cli.add_command(command)


def main() -> None:
    cli()
