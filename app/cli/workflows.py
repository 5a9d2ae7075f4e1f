"""``jobplane workflows …``: submit, list and inspect workflows, cancel and retry one
(through the API, like the task commands)."""

from __future__ import annotations

import json
from typing import IO, Any

import click

from jobplane.cli.admin import _connection_options
from jobplane.cli.client import EXIT_USAGE, connect, fail
from jobplane.cli.output import STATUS_COLORS, print_json, show
from jobplane.cli.terminal import one_line

COLUMNS = [
    ("workflowId", "ID"),
    ("status", "STATUS"),
    ("stepCount", "STEPS"),
    ("percent", "%"),
    ("createdAt", "CREATED"),
    ("error", "ERROR"),
]


@click.group()
def workflows() -> None:
    """Submit, list and inspect workflows; cancel or retry one."""


@workflows.command("submit")
@click.argument("file", type=click.File("r"))
@click.option(
    "--idempotency-key", default=None, help="the same key again answers the first workflow"
)
@_connection_options
def submit_workflow(
    file: IO[str], idempotency_key: str | None, url: str | None, token: str | None, as_json: bool
) -> None:
    """Submit the workflow in FILE (- for standard input): the JSON body POST
    /api/workflows takes, e.g. {"chain": [{"type": "demo.echo"}, ...]}."""
    try:
        body = json.load(file)
    except ValueError as error:
        fail(f"{file.name} is not JSON: {error}", EXIT_USAGE)
    if not isinstance(body, dict):
        fail(f"{file.name} must hold a JSON object: a chain or a group", EXIT_USAGE)
    with connect(url, token) as client:
        # An empty key is sent too, for the API to refuse (as ``jobplane submit`` does).
        workflow = client.submit_workflow(body, idempotency_key=idempotency_key)
    if as_json:
        print_json(workflow.raw)
    else:
        steps = f"{workflow.step_count} step(s), {workflow.status}"
        click.echo(one_line(f"submitted {workflow.workflow_id} ({steps})"))


@workflows.command("ls")
@click.option("--status", default=None, help="running, completed, failed or cancelled")
@click.option("--page", type=int, default=1, show_default=True)
@click.option("--page-size", type=int, default=50, show_default=True)
@_connection_options
def list_workflows(
    status: str | None, page: int, page_size: int, url: str | None, token: str | None, as_json: bool
) -> None:
    """List workflows, newest first."""
    with connect(url, token) as client:
        answer = client.workflows(status=status, page=page, page_size=page_size)
    show(answer.raw, as_json, print_workflow_table)


@workflows.command("show")
@click.argument("workflow_id")
@_connection_options
def show_workflow(workflow_id: str, url: str | None, token: str | None, as_json: bool) -> None:
    """Show one workflow: its state, then its steps in order, as they nest."""
    with connect(url, token) as client:
        workflow = client.workflow(workflow_id)
    show(workflow.raw, as_json, print_workflow)


@workflows.command("cancel")
@click.argument("workflow_id")
@_connection_options
def cancel_workflow(workflow_id: str, url: str | None, token: str | None, as_json: bool) -> None:
    """Cancel every step not finished yet; running ones stop within seconds."""
    with connect(url, token) as client:
        workflow = client.cancel_workflow(workflow_id)
    if as_json:
        print_json(workflow.raw)
    else:
        running = workflow.steps_by_status.get("running", 0)
        stopping = f"; {running} running step(s) stop within seconds" if running else ""
        click.echo(one_line(f"cancelled {workflow_id}{stopping}"))


@workflows.command("retry")
@click.argument("workflow_id")
@_connection_options
def retry_workflow(workflow_id: str, url: str | None, token: str | None, as_json: bool) -> None:
    """Run a failed or cancelled workflow again from the steps that did not complete."""
    with connect(url, token) as client:
        workflow = client.retry_workflow(workflow_id)
    if as_json:
        print_json(workflow.raw)
    else:
        click.echo(one_line(f"retrying {workflow_id}: {workflow.status}"))


def print_workflow_table(page: dict[str, Any]) -> None:
    rows = [
        [one_line(item.get(key) if item.get(key) is not None else "") for key, _ in COLUMNS]
        for item in page["workflows"]
    ]
    headers = [title for _, title in COLUMNS]
    widths = [max(len(cell) for cell in column) for column in zip(headers, *rows, strict=False)]
    click.secho("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)), bold=True)
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=True)]
        cells[1] = click.style(cells[1], fg=STATUS_COLORS.get(row[1]))
        click.echo("  ".join(cells).rstrip())
    click.echo(f"{len(rows)} of {page['total']} workflow(s), page {page['page']}")


def print_workflow(workflow: dict[str, Any]) -> None:
    """The workflow's state, then its steps numbered in order, nested as submitted:
    ``chain`` and ``group`` head their members, ``then`` what runs after a group."""
    status = one_line(workflow["status"])
    click.echo(f"workflow   {one_line(workflow['workflowId'])}")
    click.echo("status     " + click.style(status, fg=STATUS_COLORS.get(status), bold=True))
    done = workflow["stepsByStatus"].get("completed", 0)
    click.echo(f"steps      {done} of {workflow['stepCount']} completed ({workflow['percent']}%)")
    for key, label in (("error", "error"), ("createdAt", "created"), ("completedAt", "ended")):
        if workflow.get(key) is not None:
            click.echo(f"{label.ljust(10)} {one_line(workflow[key])}")
    if workflow["status"] == "completed":
        click.echo(f"result     {json.dumps(workflow.get('result'))}")  # ASCII: escapes controls
    click.secho("STEPS", bold=True)
    steps = {step["taskId"]: step for step in workflow["steps"]}
    numbers = {step["taskId"]: place for place, step in enumerate(workflow["steps"], 1)}
    _print_shape(workflow["shape"], steps, numbers, depth=1)


def _print_shape(
    shape: Any, steps: dict[str, dict[str, Any]], numbers: dict[str, int], depth: int
) -> None:
    indent = "  " * depth
    if isinstance(shape, str):
        step = steps.get(shape)
        click.echo(indent + (_step_line(step, numbers[shape]) if step else one_line(shape)))
        return
    if not isinstance(shape, dict):
        return
    kind = "chain" if "chain" in shape else "group"
    label = "chain (one after the other)" if kind == "chain" else "group (side by side)"
    click.secho(indent + label, dim=True)
    for member in shape.get(kind, []):
        _print_shape(member, steps, numbers, depth + 1)
    if shape.get("then") is not None:
        click.secho(indent + "then (once the group completed)", dim=True)
        _print_shape(shape["then"], steps, numbers, depth + 1)


def _step_line(step: dict[str, Any], number: int) -> str:
    status = one_line(step["status"])
    waiting = f"  waiting on {step['waitingOn']}" if step.get("waitingOn") else ""
    error = f"  {one_line(step['error'])}" if step.get("error") else ""
    return (
        f"{number:>3}. {one_line(step['taskId'])}  {one_line(step['taskType'])}  "
        + click.style(status, fg=STATUS_COLORS.get(status))
        + f"  attempts {step['attempts']}{waiting}{error}"
    )
