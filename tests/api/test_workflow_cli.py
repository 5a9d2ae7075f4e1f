"""``jobplane workflows …`` against a live API: in this process (click's runner), and
as a subprocess where the command itself is the point (standard input, no traceback)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import httpx
from click.testing import CliRunner, Result
from sqlalchemy import Engine, update

from jobplane.cli.client import EXIT_API_ERROR, EXIT_NOT_FOUND, EXIT_USAGE
from jobplane.cli.main import cli
from jobplane.db import make_engine
from jobplane.models import Task
from jobplane.settings import Settings
from tests.api.test_cli import CLI_TOKEN
from tests.api.test_cli import jobplane as jobplane_process


def jobplane(*args: str, url: str, token: str) -> Result:
    """The command, run in this process against the API at ``url``."""
    env = {"JOBPLANE_URL": url, "JOBPLANE_API_TOKEN": token}
    return CliRunner().invoke(cli, list(args), env=env)


WORKFLOW = {
    "chain": [
        {"type": "demo.echo", "params": {"n": 1}},
        {"group": [{"type": "demo.echo"}, {"type": "demo.noop"}], "then": {"type": "demo.echo"}},
    ]
}


def fail_step(engine: Engine, task_id: str) -> None:
    with engine.begin() as conn:
        conn.execute(update(Task).where(Task.id == task_id).values(status="failed", error="boom"))


def test_submit_list_show_cancel_and_retry_a_workflow(
    api_factory: Callable[..., httpx.Client], pg_settings: Settings, tmp_path: Path
) -> None:
    url = str(api_factory(pg_settings.model_copy(update={"api_token": CLI_TOKEN})).base_url)
    body = tmp_path / "workflow.json"
    body.write_text(json.dumps(WORKFLOW))

    # Submitted from a file, with --json: the workflow's detail
    submitted = jobplane("workflows", "submit", str(body), "--json", url=url, token=CLI_TOKEN)
    assert submitted.exit_code == 0, submitted.output
    workflow = json.loads(submitted.stdout)
    wid = workflow["workflowId"]
    assert workflow["stepCount"] == 4
    # For people, from standard input: one line
    again = jobplane_process("workflows", "submit", "-", url=url, token=CLI_TOKEN, stdin=body)
    assert again.returncode == 0, again.stderr
    assert "submitted" in again.stdout and "4 step(s), running" in again.stdout

    listed = jobplane("workflows", "ls", "--json", "--page-size", "1", url=url, token=CLI_TOKEN)
    page = json.loads(listed.stdout)
    assert (page["total"], len(page["workflows"])) == (2, 1)
    table = jobplane("workflows", "ls", "--status", "running", url=url, token=CLI_TOKEN)
    assert wid in table.stdout and "2 of 2 workflow(s), page 1" in table.stdout

    # show: the steps numbered in order, the group's members under it, then its `then`
    shown = jobplane("workflows", "show", wid, url=url, token=CLI_TOKEN)
    assert shown.exit_code == 0, shown.output
    lines = shown.stdout.splitlines()
    steps = [step["taskId"] for step in workflow["steps"]]
    at = {name: next(i for i, line in enumerate(lines) if name in line) for name in steps}
    group = next(i for i, line in enumerate(lines) if "group (side by side)" in line)
    then = next(i for i, line in enumerate(lines) if line.strip().startswith("then"))
    assert at[steps[0]] < group < at[steps[1]] < at[steps[2]] < then < at[steps[3]]
    assert lines[at[steps[1]]].startswith("      ")  # indented under the group
    assert "  1. " in lines[at[steps[0]]] and "demo.noop" in lines[at[steps[2]]]
    assert "pending" in lines[at[steps[3]]] and "waiting on 2" in lines[at[steps[3]]]
    assert (
        json.loads(jobplane("workflows", "show", wid, "--json", url=url, token=CLI_TOKEN).stdout)[
            "shape"
        ]
        == workflow["shape"]
    )

    # cancel, then retry; a second cancel is refused with the API's message
    cancelled = jobplane("workflows", "cancel", wid, url=url, token=CLI_TOKEN)
    assert cancelled.exit_code == 0 and f"cancelled {wid}" in cancelled.stdout
    refused = jobplane("workflows", "cancel", wid, url=url, token=CLI_TOKEN)
    assert refused.exit_code == EXIT_API_ERROR
    assert "409" in refused.stderr and "already cancelled" in refused.stderr
    retried = jobplane("workflows", "retry", wid, "--json", url=url, token=CLI_TOKEN)
    assert retried.exit_code == 0, retried.output
    assert json.loads(retried.stdout)["status"] == "running"


def test_workflow_commands_fail_clearly(
    api_factory: Callable[..., httpx.Client], pg_settings: Settings, tmp_path: Path
) -> None:
    url = str(api_factory(pg_settings.model_copy(update={"api_token": CLI_TOKEN})).base_url)
    missing = jobplane("workflows", "show", "missing", url=url, token=CLI_TOKEN)
    assert missing.exit_code == EXIT_NOT_FOUND
    assert "no workflow with id 'missing'" in missing.stderr

    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    not_json = jobplane("workflows", "submit", str(broken), url=url, token=CLI_TOKEN)
    assert not_json.exit_code == EXIT_USAGE
    assert "is not JSON" in not_json.stderr and "Traceback" not in not_json.stderr

    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"chain": [{"type": "demo.echo"}, {"group": [{"type": "nope"}]}]}))
    refused = jobplane_process("workflows", "submit", str(bad), url=url, token=CLI_TOKEN)
    assert refused.returncode == EXIT_API_ERROR
    assert "workflow.chain[1].group[0]: unknown job type 'nope'" in refused.stderr
    assert "Traceback" not in refused.stderr

    # A step's own retry is refused, pointing at its workflow's
    engine = make_engine(pg_settings.database_url)
    try:
        body = tmp_path / "one.json"
        body.write_text(json.dumps({"chain": [{"type": "demo.noop"}]}))
        submitted = jobplane("workflows", "submit", str(body), "--json", url=url, token=CLI_TOKEN)
        workflow = json.loads(submitted.stdout)
        step = workflow["steps"][0]["taskId"]
        fail_step(engine, step)
    finally:
        engine.dispose()
    retried = jobplane("tasks", "retry", step, url=url, token=CLI_TOKEN)
    assert retried.exit_code == EXIT_API_ERROR
    assert f"jobplane workflows retry {workflow['workflowId']}" in retried.stderr


def test_submit_with_an_idempotency_key_writes_the_workflow_once(
    api_factory: Callable[..., httpx.Client], pg_settings: Settings, tmp_path: Path
) -> None:
    url = str(api_factory(pg_settings.model_copy(update={"api_token": CLI_TOKEN})).base_url)
    body = tmp_path / "workflow.json"
    body.write_text(json.dumps(WORKFLOW))
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"chain": [{"type": "demo.noop"}]}))

    def submit(path: Path, key: str) -> Result:
        command = ["workflows", "submit", str(path), "--idempotency-key", key, "--json"]
        return jobplane(*command, url=url, token=CLI_TOKEN)

    # The same file with the same key twice: one workflow, the same answer
    first, again = submit(body, "nightly-1"), submit(body, "nightly-1")
    assert (first.exit_code, again.exit_code) == (0, 0), first.output + again.output
    assert json.loads(again.stdout)["workflowId"] == json.loads(first.stdout)["workflowId"]
    listed = jobplane("workflows", "ls", "--json", url=url, token=CLI_TOKEN)
    assert json.loads(listed.stdout)["total"] == 1
    # Another workflow under that key, or an empty key: refused, nothing written
    conflict = submit(other, "nightly-1")
    assert conflict.exit_code == EXIT_API_ERROR
    assert json.loads(first.stdout)["workflowId"] in conflict.stderr
    empty = submit(body, "")
    assert empty.exit_code == EXIT_API_ERROR
    assert "must not be empty" in empty.stderr
    listed = jobplane("workflows", "ls", "--json", url=url, token=CLI_TOKEN)
    assert json.loads(listed.stdout)["total"] == 1
