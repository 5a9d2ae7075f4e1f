"""The ``demo.*`` jobs exist only where ``JOBPLANE_DEMO_JOBS`` is on (``jobplane dev``
turns it on itself: ``tests/e2e/test_dev.py`` runs one with no ``JOBPLANE_*`` set)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def test_without_demo_jobs_a_demo_job_is_an_unknown_job_type(
    platform_factory: Callable[..., Any], pg_url: str, redis_url: str
) -> None:
    # Given an API process started without JOBPLANE_DEMO_JOBS
    platform = platform_factory(pg_url, redis_url)
    platform.env.pop("JOBPLANE_DEMO_JOBS")
    platform.start_api()
    client = platform.client()

    # When a client submits demo.echo
    response = client.post("/api/tasks", json={"type": "demo.echo", "params": {"hi": 1}})

    # Then it is refused as an unknown job type, and no demo job is among the known ones
    assert response.status_code == 422, response.text
    assert response.json()["error"] == "unknown_job_type"
    assert "demo." not in response.json()["message"].split("known types:")[1]
