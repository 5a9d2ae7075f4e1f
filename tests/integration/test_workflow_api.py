"""A workflow submitted over HTTP runs to its end on a real worker, relay and Redis."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import dramatiq
import httpx
from sqlalchemy import Engine

from jobplane.outbox.relay import Relay
from jobplane.settings import Settings
from tests.conftest import wait_until
from tests.integration.conftest import Workers


def test_a_chain_with_a_group_submitted_over_http_completes_with_its_result(
    api_factory: Callable[..., httpx.Client],
    pg_engine: Engine,
    pg_settings: Settings,
    publisher: dramatiq.Broker,
    start_worker: Workers,
) -> None:
    # Given the API, a relay and a worker on PostgreSQL and Redis
    api = api_factory(pg_settings)
    relay = Relay(pg_engine, publisher, pg_settings)
    start_worker()

    # When a chain is submitted: a step, a group of two, a step taking the group's results
    body = {
        "chain": [
            {"type": "demo.echo", "params": {"n": 1}},
            {
                "group": [
                    {"type": "demo.echo", "params": {"n": 2}},
                    {"type": "demo.echo", "params": {"n": 3}},
                ],
                "then": {"type": "demo.echo", "pipeResult": True},
            },
        ]
    }
    submitted = api.post("/api/workflows", json=body)
    assert submitted.status_code == 201, submitted.text
    workflow_id = submitted.json()["workflowId"]

    def ended() -> dict[str, Any] | None:
        relay.drain()  # each step's end writes the next steps' outbox rows
        answer: dict[str, Any] = api.get(f"/api/admin/workflows/{workflow_id}").json()
        return answer if answer["status"] != "running" else None

    # Then it completes, and its detail holds every step completed and the last one's result
    done = wait_until(ended, timeout=30, what="the workflow to end")
    assert done["status"] == "completed", done
    assert (done["percent"], done["stepsByStatus"]["completed"]) == (100, 4)
    assert done["completedAt"] is not None
    assert [step["status"] for step in done["steps"]] == ["completed"] * 4
    assert done["result"] == {"result": [{"n": 2}, {"n": 3}]}
    listed = api.get("/api/admin/workflows", params={"status": "completed"}).json()
    assert [w["workflowId"] for w in listed["workflows"]] == [workflow_id]
