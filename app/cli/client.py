"""The admin commands' connection to the API at ``--url`` with ``--token``: a
``jobplane.Client``, and its errors as a message and an exit code scripts rely on."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import NoReturn

import click

from jobplane.cli.terminal import lines
from jobplane.domain import ApiUnavailable, JobplaneError
from jobplane.library.client import Client
from jobplane.settings import get_settings

#: Exit codes scripts can rely on.
EXIT_OK = 0
EXIT_API_ERROR = 1  #: the API refused the request (4xx): the message says why
EXIT_USAGE = 2  #: bad command line (click's own code)
EXIT_UNREACHABLE = 3  #: the API could not be reached, or failed (5xx)
EXIT_NOT_FOUND = 4  #: no such task


@contextmanager
def connect(url: str | None, token: str | None) -> Iterator[Client]:
    """A client of the API for the command's body; what the API refuses ends the command
    with its message (``404: no task with id 'x'``) and exit code."""
    try:
        with Client(url or get_settings().url, token) as client:
            yield client
    except JobplaneError as error:
        status = f"{error.http_status}: " if error.http_status else ""
        fail(f"{status}{error.message}", exit_code(error))


def exit_code(error: JobplaneError) -> int:
    if isinstance(error, ApiUnavailable):
        return EXIT_UNREACHABLE
    return EXIT_NOT_FOUND if error.http_status == 404 else EXIT_API_ERROR


def fail(message: str, code: int) -> NoReturn:
    click.secho(f"error: {lines(message)}", fg="red", err=True)  # the API's words, maybe a job's
    raise SystemExit(code)
