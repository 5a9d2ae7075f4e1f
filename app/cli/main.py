"""``jobplane``: process commands (dev, api, relay, worker, migrate) and admin commands."""

from __future__ import annotations

import sys

import click
from pydantic import ValidationError
from pydantic_settings import SettingsError
from sqlalchemy.exc import ArgumentError, OperationalError

from jobplane.cli import admin, processes, schedules, workflows
from jobplane.domain import JobplaneError


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
    workflows.workflows,
):
    cli.add_command(command)


#: Mistakes in the configuration or the environment: a one-line message, exit code 2,
#: rather than a traceback.
CONFIGURATION_ERRORS: tuple[type[Exception], ...] = (
    JobplaneError,  # a job module that does not import, a bad schedule…
    SettingsError,  # JOBPLANE_* values that do not parse
    ArgumentError,  # a database URL SQLAlchemy cannot read
)


def main() -> None:
    try:
        cli()
    except ValidationError as error:
        for problem in error.errors():
            name = "JOBPLANE_" + "_".join(str(part) for part in problem["loc"]).upper()
            message = problem["msg"].removeprefix("Value error, ")
            click.secho(f"error: {name}: {message}", fg="red", err=True)
        sys.exit(2)
    except CONFIGURATION_ERRORS as error:
        click.secho(f"error: {error}", fg="red", err=True)
        sys.exit(2)
    except OperationalError as error:
        click.secho(f"error: cannot reach the database: {error.orig}", fg="red", err=True)
        sys.exit(3)
