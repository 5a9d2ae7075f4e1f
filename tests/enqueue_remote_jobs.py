"""A job only the worker imports: the enqueue tests submit it by name, as application
code that does not import a job module would."""

from __future__ import annotations

from jobplane import job


@job("tests.enqueue.remote_greet")
def greet(name: str) -> str:
    return f"hello {name}"
