"""What the CLI prints for people never hands a terminal a control character from a
task's fields; ``--json`` gives them exactly."""

from __future__ import annotations

import json
import re
from collections.abc import Callable

import httpx
from sqlalchemy import update

import jobplane
from jobplane import store
from jobplane.db import make_engine
from jobplane.models import Task, utcnow
from jobplane.settings import Settings
from jobplane.store.rows import NewLogLine
from tests.api.test_cli import jobplane as run_cli

#: Sets the terminal's title, clears the screen, clears it again (C1 CSI), rewrites the line.
TITLE, CLEAR, C1_CLEAR = "\x1b]0;pwned\x07", "\x1b[2J", "\x9b2J"
HOSTILE = f"{TITLE} {CLEAR} {C1_CLEAR}\rforged"
SHOWN = "\\x1b]0;pwned\\x07 \\x1b[2J \\x9b2J\\rforged"
LOG = f"{HOSTILE}\nTraceback line two\tafter a tab"


def field(shown: str, name: str) -> str:
    """The value ``tasks show`` printed for ``name``."""
    found = re.search(rf"^{name} +(.*)$", shown, re.MULTILINE)
    assert found, shown
    return found.group(1)


def test_task_fields_and_log_lines_are_printed_escaped_and_exact_as_json(
    api_factory: Callable[..., httpx.Client], sqlite_url: str
) -> None:
    # Given a task whose type, params, error and log line hold escape sequences
    url = str(api_factory(Settings(database_url=sqlite_url)).base_url)
    engine = make_engine(sqlite_url)
    with engine.begin() as conn:
        task_id = jobplane.enqueue(conn, f"evil{CLEAR}", {"x": HOSTILE})
        conn.execute(update(Task).where(Task.id == task_id).values(error=HOSTILE))
        store.logs.append_logs(conn, [NewLogLine(task_id, "ERROR", LOG, utcnow())])
    engine.dispose()

    # When a person lists, shows and reads the log of it
    printed = [
        run_cli("tasks", "ls", url=url),
        run_cli("tasks", "show", task_id, url=url),
        run_cli("tasks", "logs", task_id, url=url),
    ]

    # Then no control character of theirs reaches the terminal, each shown escaped
    for done in printed:
        assert done.returncode == 0, done.stderr
        assert not {"\x1b", "\x07", "\x9b", "\r"} & set(done.stdout), done.stdout
    listed, shown, logs = (done.stdout for done in printed)
    assert "evil\\x1b[2J" in listed
    assert field(shown, "error") == SHOWN and field(shown, "taskType") == "evil\\x1b[2J"
    assert '"x": "\\u001b]0;pwned\\u0007' in shown  # params as JSON
    assert f"{SHOWN}\nTraceback line two\tafter a tab" in logs  # a traceback keeps its lines

    # and scripts still get every character exactly
    as_json = json.loads(run_cli("tasks", "show", task_id, "--json", url=url).stdout)
    assert (as_json["taskType"], as_json["params"], as_json["error"]) == (
        f"evil{CLEAR}",
        {"x": HOSTILE},
        HOSTILE,
    )
    log_json = json.loads(run_cli("tasks", "logs", task_id, "--json", url=url).stdout)
    assert log_json["lines"][0]["message"] == LOG
