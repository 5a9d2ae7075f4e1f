"""The admin CLI, run as a subprocess against a live API."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import httpx

from jobplane import store
from jobplane.cli.client import EXIT_API_ERROR, EXIT_NOT_FOUND, EXIT_UNREACHABLE
from jobplane.settings import Settings
from jobplane.store.rows import NewLogLine

CLI_TOKEN = "cli-test-token-0123"


def jobplane(
    *args: str, url: str, token: str | None = None, stdin: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """The command in a process of its own; ``stdin``: a file it reads as its input."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOBPLANE_")}
    env["JOBPLANE_URL"] = url
    if token:
        env["JOBPLANE_API_TOKEN"] = token
    return subprocess.run(
        [sys.executable, "-m", "jobplane.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        input=stdin.read_text() if stdin else None,
    )


def test_submit_then_list_and_show_the_task(
    api_factory: Callable[..., httpx.Client], pg_settings: Settings
) -> None:
    settings = pg_settings.model_copy(update={"api_token": CLI_TOKEN})
    url = str(api_factory(settings).base_url)

    submitted = jobplane(
        "submit",
        "demo.echo",
        "--param",
        "days=60",
        "-p",
        "name=x",
        "--json",
        url=url,
        token=CLI_TOKEN,
    )
    assert submitted.returncode == 0, submitted.stderr
    task = json.loads(submitted.stdout)
    assert task["params"] == {"days": 60, "name": "x"}

    listed = jobplane("tasks", "ls", "--json", url=url, token=CLI_TOKEN)
    assert [t["taskId"] for t in json.loads(listed.stdout)["tasks"]] == [task["taskId"]]
    table = jobplane("tasks", "ls", url=url, token=CLI_TOKEN)
    assert task["taskId"] in table.stdout and "pending" in table.stdout

    shown = jobplane("tasks", "show", task["taskId"], url=url, token=CLI_TOKEN)
    assert shown.returncode == 0
    assert "demo.echo" in shown.stdout


def test_errors_have_exit_codes_scripts_can_rely_on(
    api_factory: Callable[..., httpx.Client], pg_settings: Settings
) -> None:
    url = str(api_factory(pg_settings.model_copy(update={"api_token": CLI_TOKEN})).base_url)

    unknown = jobplane("submit", "nope", url=url, token=CLI_TOKEN)
    assert unknown.returncode == EXIT_API_ERROR
    assert "unknown job type 'nope'" in unknown.stderr
    assert "Traceback" not in unknown.stderr

    assert jobplane("tasks", "ls", url=url).returncode == EXIT_API_ERROR  # no token
    assert (
        jobplane("tasks", "show", "missing", url=url, token=CLI_TOKEN).returncode == EXIT_NOT_FOUND
    )
    down = jobplane("tasks", "ls", url="http://127.0.0.1:1")
    assert down.returncode == EXIT_UNREACHABLE
    assert "cannot reach the API" in down.stderr
    bad = jobplane("submit", "demo.echo", "--param", "novalue", url=url, token=CLI_TOKEN)
    assert bad.returncode == 2
    empty_key = jobplane("submit", "demo.echo", "--idempotency-key", "", url=url, token=CLI_TOKEN)
    assert empty_key.returncode == EXIT_API_ERROR
    assert "must not be empty" in empty_key.stderr


def test_an_api_whose_database_is_down_is_exit_code_3_with_its_answer(
    api_factory: Callable[..., httpx.Client],
) -> None:
    settings = Settings(database_url="postgresql+psycopg://postgres@127.0.0.1:1/none")
    url = str(api_factory(settings).base_url)

    failed = jobplane("submit", "demo.noop", url=url)
    assert failed.returncode == EXIT_UNREACHABLE
    assert "503: the database is unreachable" in failed.stderr
    assert "Traceback" not in failed.stderr


def test_a_bad_configuration_is_one_clear_line_not_a_traceback(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOBPLANE_")}
    cases = [
        (["relay"], {"JOBPLANE_BROKER_URL": "kafka://x"}, "JOBPLANE_BROKER_URL"),
        (["worker", "-p", "1"], {"JOBPLANE_JOBS": "nosuch.jobs"}, "cannot import job module"),
        (["migrate"], {"JOBPLANE_DATABASE_URL": "bogus"}, "Could not parse"),
        (["migrate"], {"JOBPLANE_CONCURRENCY": "{not json"}, "concurrency"),
        (["migrate"], {"JOBPLANE_DEFAULT_MAX_RETRIES": "101"}, "JOBPLANE_DEFAULT_MAX_RETRIES"),
        (["worker", "-p", "1"], {"JOBPLANE_JOBS": "many_retries"}, "max_retries must be between"),
    ]
    # A job module (importable: `python -m` puts the working directory on the path).
    (tmp_path / "many_retries.py").write_text(
        "from jobplane import job\n\n@job('many.retries', max_retries=5000)\ndef f(): pass\n"
    )
    for args, settings, message in cases:
        done = subprocess.run(
            [sys.executable, "-m", "jobplane.cli", *args],
            env={**env, **settings, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 2, (args, done.stderr)
        assert message in done.stderr
        assert "Traceback" not in done.stderr


def test_logs_cancel_and_retry_from_the_command_line(
    api_factory: Callable[..., httpx.Client], pg_settings: Settings
) -> None:
    from jobplane.db import make_engine
    from jobplane.models import utcnow

    url = str(api_factory(pg_settings).base_url)
    task_id = json.loads(jobplane("submit", "demo.echo", "--json", url=url).stdout)["taskId"]

    cancelled = jobplane("tasks", "cancel", task_id, url=url)
    assert (cancelled.returncode, cancelled.stdout.strip()) == (0, f"cancelled {task_id}")
    again = jobplane("tasks", "cancel", task_id, url=url)
    assert again.returncode == 1 and "already cancelled" in again.stderr

    retried = jobplane("tasks", "retry", task_id, "--json", url=url)
    assert json.loads(retried.stdout)["status"] == "pending"

    engine = make_engine(pg_settings.database_url)
    try:
        with engine.begin() as conn:
            store.logs.append_logs(
                conn,
                [
                    NewLogLine(task_id, level, text, utcnow())
                    for level, text in (("INFO", "fetched 3 rows"), ("ERROR", "disk full"))
                ],
            )
    finally:
        engine.dispose()
    shown = jobplane("tasks", "logs", task_id, url=url)
    assert "fetched 3 rows" in shown.stdout and "disk full" in shown.stdout
    errors = json.loads(
        jobplane("tasks", "logs", task_id, "--level", "error", "--json", url=url).stdout
    )
    assert [line["message"] for line in errors["lines"]] == ["disk full"]
