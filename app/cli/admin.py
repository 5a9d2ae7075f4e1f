"""Admin commands: they talk to the API over HTTP, like any remote client."""

from __future__ import annotations

import json
from typing import Any

import click

from jobplane.cli.client import connect, fail
from jobplane.cli.output import (
    STATUS_COLORS,
    print_json,
    print_log,
    print_task,
    print_task_table,
    show,
)
from jobplane.cli.terminal import one_line
from jobplane.domain import TaskStatus


def _connection_options(fn: Any) -> Any:
    fn = click.option(
        "--token",
        envvar="JOBPLANE_API_TOKEN",
        default=None,
        help="API token (env JOBPLANE_API_TOKEN)",
    )(fn)
    fn = click.option(
        "--url", envvar="JOBPLANE_URL", default=None, help="API URL (env JOBPLANE_URL)"
    )(fn)
    return click.option("--json", "as_json", is_flag=True, help="print JSON for scripts")(fn)


def parse_param(text: str) -> tuple[str, Any]:
    """``k=v``: v as JSON when it parses (numbers, true, lists…), else as a string."""
    key, sep, raw = text.partition("=")
    if not sep or not key:
        fail(f"--param expects key=value, got {text!r}", 2)
    try:
        return key, json.loads(raw)
    except ValueError:
        return key, raw


@click.command()
@click.argument("job_type")
@click.option("--param", "-p", "params", multiple=True, help="a parameter, key=value (repeatable)")
@click.option("--queue", default=None)
@click.option("--delay", "delay_seconds", type=float, default=0, help="seconds before it may start")
@click.option("--max-retries", type=int, default=None)
@click.option("--timeout", "timeout_seconds", type=int, default=None, help="time limit, seconds")
@click.option("--idempotency-key", default=None)
@_connection_options
def submit(
    job_type: str,
    params: tuple[str, ...],
    queue: str | None,
    delay_seconds: float,
    max_retries: int | None,
    timeout_seconds: int | None,
    idempotency_key: str | None,
    url: str | None,
    token: str | None,
    as_json: bool,
) -> None:
    """Submit a job of JOB_TYPE."""
    given = dict(map(parse_param, params))
    with connect(url, token) as client:
        # An empty key is sent too: the API refuses it, rather than the CLI dropping it and
        # the submission silently losing its idempotency (say, from an unset shell variable).
        task = client.submit(
            job_type,
            given,
            queue=queue,
            delay=delay_seconds or None,
            max_retries=max_retries,
            timeout=timeout_seconds,
            idempotency_key=idempotency_key,
        )
    if as_json:
        print_json(task.raw)
    else:
        click.echo(one_line(f"submitted {task.task_id} ({task.task_type}, {task.status})"))


@click.group()
def tasks() -> None:
    """List and inspect tasks."""


@tasks.command("ls")
@click.option("--status", default=None)
@click.option("--type", "job_type", default=None)
@click.option("--queue", default=None)
@click.option("--search", default=None, help="the start of a task id")
@click.option("--page", type=int, default=1, show_default=True)
@click.option("--page-size", type=int, default=50, show_default=True)
@_connection_options
def list_tasks(
    status: str | None,
    job_type: str | None,
    queue: str | None,
    search: str | None,
    page: int,
    page_size: int,
    url: str | None,
    token: str | None,
    as_json: bool,
) -> None:
    """List tasks, newest first."""
    with connect(url, token) as client:
        answer = client.list_tasks(
            status=status,
            type=job_type,
            queue=queue,
            search=search,
            page=page,
            page_size=page_size,
        )
    show(answer.raw, as_json, print_task_table)


@tasks.command("show")
@click.argument("task_id")
@_connection_options
def show_task(task_id: str, url: str | None, token: str | None, as_json: bool) -> None:
    """Show one task in full."""
    with connect(url, token) as client:
        task = client.get(task_id)
    show(task.raw, as_json, print_task)


@tasks.command("logs")
@click.argument("task_id")
@click.option("--level", default=None, help="only lines of this level (INFO, WARNING, ERROR…)")
@click.option("--page", type=int, default=1, show_default=True)
@click.option("--page-size", type=int, default=100, show_default=True)
@_connection_options
def task_logs(
    task_id: str,
    level: str | None,
    page: int,
    page_size: int,
    url: str | None,
    token: str | None,
    as_json: bool,
) -> None:
    """Show a task's log, oldest first."""
    with connect(url, token) as client:
        answer = client.logs(task_id, level=level, page=page, page_size=page_size)
    show(answer.raw, as_json, print_log)


@tasks.command("cancel")
@click.argument("task_id")
@_connection_options
def cancel_task(task_id: str, url: str | None, token: str | None, as_json: bool) -> None:
    """Cancel a pending task, or ask a running one to stop."""
    with connect(url, token) as client:
        task = client.cancel(task_id)
    if as_json:
        print_json(task.raw)
    elif task.status == TaskStatus.CANCELLED:
        click.echo(one_line(f"cancelled {task_id}"))
    else:
        message = f"cancel requested: {task_id} is running and will stop within seconds"
        click.echo(one_line(message))


@tasks.command("retry")
@click.argument("task_id")
@_connection_options
def retry_task(task_id: str, url: str | None, token: str | None, as_json: bool) -> None:
    """Start a new run of a failed or cancelled task."""
    with connect(url, token) as client:
        task = client.retry(task_id)
    if as_json:
        print_json(task.raw)
    else:
        click.echo(one_line(f"retrying {task_id}: {task.status}"))


@click.command()
@_connection_options
def stats(url: str | None, token: str | None, as_json: bool) -> None:
    """Tasks by status, the outbox backlog and the workers seen recently."""
    with connect(url, token) as client:
        answer = client.stats()
    show(answer, as_json, print_stats)


def print_stats(answer: dict[str, Any]) -> None:
    """The stats for people: counts by status, outbox, one line per worker."""
    width = max(len(status) for status in answer["counts"])
    click.secho("TASKS", bold=True)
    for status, count in answer["counts"].items():
        label = click.style(one_line(status).ljust(width), fg=STATUS_COLORS.get(status))
        click.echo(f"  {label}  {count:>8}")
    click.echo(f"  {'total'.ljust(width)}  {answer['total']:>8}")
    outbox = answer["outbox"]
    age = outbox["oldestAgeSeconds"]
    oldest = f", oldest {age:.1f} s old" if age is not None else ""
    click.secho("OUTBOX", bold=True)
    click.echo(f"  {outbox['backlog']} row(s) waiting{oldest}")
    workers = answer["workers"]
    window = answer["workersWindowSeconds"]
    click.secho(f"WORKERS (heartbeat in the last {window:.0f} s)", bold=True)
    for worker in workers:
        click.echo(
            one_line(
                f"  {worker['worker']}  last heartbeat {worker['lastHeartbeatAt']}"
                f"  running {worker['running']}"
            )
        )
    if not workers:
        click.echo("  none")
