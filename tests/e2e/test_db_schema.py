"""JOBPLANE_DB_SCHEMA: every process works with jobplane's objects in a schema of their own.

Statements built from the models get the schema from the engine; SQL compiled ahead
(the API's one-statement submission, the worker's batched claim and completion) must
name it itself: here nothing jobplane needs is in ``public`` to fall back on.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import text

from jobplane.db import make_engine
from tests import catalog
from tests.e2e.test_lifecycle import finished, logs, submit
from tests.e2e.test_plain_install import wait_for_a_leader

SCHEMA = "jobs_here"


def test_with_a_schema_every_process_completes_jobs_and_public_stays_empty(
    empty_pg_url: str, redis_url: str, platform_factory: Callable[..., Any]
) -> None:
    # Given every process with JOBPLANE_DB_SCHEMA, on a database with nothing in it
    platform = platform_factory(empty_pg_url, redis_url, db_schema=SCHEMA)
    platform.migrate()
    relay, scheduler = platform.start_every_process()
    client = platform.client()

    # When jobs are submitted: one that logs its progress, one that fails once and is
    # retried, a batch
    slept = submit(client, "demo.sleep", params={"seconds": 0.2, "steps": 2})
    failed_once = submit(client, "demo.fail", params={"times": 1})
    batch = client.post("/api/tasks/batch", json={"tasks": [{"type": "demo.noop"}] * 5})
    assert batch.status_code == 201, batch.text

    # Then all complete, the relay or the scheduler leads maintenance, and jobplane's
    # objects are all in the schema
    for task_id in [slept, failed_once, *batch.json()["taskIds"]]:
        assert finished(client, task_id)["status"] == "completed"
    assert any("step 2 of 2" in line["message"] for line in logs(client, slept))
    wait_for_a_leader(relay, scheduler)
    engine = make_engine(empty_pg_url)
    with engine.connect() as conn:
        in_public = catalog.object_names(conn, "public")
        in_schema = catalog.object_names(conn, SCHEMA)
        counts = conn.execute(
            text(f"SELECT status, count(*) FROM {SCHEMA}.jobplane_tasks GROUP BY 1")
        )
        by_status = dict(counts.all())
    engine.dispose()
    assert in_public == []
    assert ("relation", "jobplane_alembic_version") in in_schema
    assert by_status == {"completed": 7}
