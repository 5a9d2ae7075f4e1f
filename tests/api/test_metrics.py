"""``/metrics``: Prometheus text, computed from the database at each scrape."""

from __future__ import annotations

from collections.abc import Callable

import httpx
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import Engine

from jobplane import store
from jobplane.models import utcnow
from jobplane.settings import Settings

TOKEN = "metrics-test-token-0123"
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(client: httpx.Client) -> Samples:
    """Every sample of ``/metrics``, by name and labels; fetched without a token."""
    answer = httpx.get(f"{client.base_url}/metrics", timeout=10)
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(answer.text)
        for sample in family.samples
    }


def tasks(samples: Samples, status: str, job_type: str) -> float:
    return samples[("jobplane_tasks", (("status", status), ("type", job_type)))]


def test_task_counts_move_as_tasks_are_submitted_and_run(
    api_factory: Callable[..., httpx.Client], pg_settings: Settings, pg_engine: Engine
) -> None:
    # Given an API with a token (which /metrics does not need), and no task yet
    api = api_factory(pg_settings.model_copy(update={"api_token": TOKEN}), token=TOKEN)
    before = scrape(api)
    assert before[("jobplane_database_up", ())] == 1
    assert tasks(before, "pending", "demo.echo") == 0
    assert before[("jobplane_outbox_backlog", ())] == 0
    assert before[("jobplane_outbox_oldest_age_seconds", ())] == 0

    # When three echo tasks and one noop are submitted
    ids = api.post(
        "/api/tasks/batch", json={"tasks": [{"type": "demo.echo"}] * 3 + [{"type": "demo.noop"}]}
    ).json()["taskIds"]
    submitted = scrape(api)

    # Then they count as pending, by type, and wait in the outbox
    assert tasks(submitted, "pending", "demo.echo") == 3
    assert tasks(submitted, "pending", "demo.noop") == 1
    assert submitted[("jobplane_outbox_backlog", ())] == 4
    assert submitted[("jobplane_outbox_oldest_age_seconds", ())] >= 0

    # When a worker runs two echo tasks to completion
    with pg_engine.begin() as conn:
        store.workers.report(conn, "w:1", utcnow())
        for task_id in ids[:2]:
            now = utcnow()
            store.claims.claim_task(conn, task_id, 1, worker="w:1", now=now)
            store.claims.complete_task(conn, task_id, 1, result=None, now=now)
    ran = scrape(api)

    # Then the counts moved from pending to completed, and a worker is seen
    assert tasks(ran, "pending", "demo.echo") == 1
    assert tasks(ran, "completed", "demo.echo") == 2
    assert tasks(ran, "completed", "demo.noop") == 0
    assert ran[("jobplane_workers_seen", ())] == 1


def test_metrics_still_answer_when_the_database_is_down(
    api_factory: Callable[..., httpx.Client],
) -> None:
    api = api_factory(Settings(database_url="postgresql+psycopg://postgres@127.0.0.1:1/none"))
    samples = scrape(api)
    assert samples[("jobplane_database_up", ())] == 0
    assert not any(name == "jobplane_tasks" for name, _ in samples)


def test_relays_rescuers_and_workers_numbers_reach_the_apis_metrics(
    api_factory: Callable[..., httpx.Client], pg_settings: Settings, pg_engine: Engine
) -> None:
    from datetime import timedelta

    from jobplane.broker.factory import make_broker
    from jobplane.maintenance.rescuer import Rescuer
    from jobplane.outbox.relay import Relay

    # Given an API, and nothing relayed yet
    api = api_factory(pg_settings)
    assert scrape(api)[("jobplane_relay_published_total", ())] == 0

    # When a relay publishes three tasks, and two of them run: one completes in 2 s;
    # the other's worker dies, and the maintenance leader's rescuer recovers it
    ids = api.post("/api/tasks/batch", json={"tasks": [{"type": "demo.echo"}] * 3}).json()[
        "taskIds"
    ]
    broker = make_broker(pg_settings.broker_url)
    rescuer = Rescuer.from_settings(pg_engine, broker, pg_settings)
    Relay(pg_engine, broker, pg_settings).drain()
    start = utcnow()
    with pg_engine.begin() as conn:
        store.claims.claim_task(conn, ids[0], 1, worker="w:1", now=start)
        store.claims.complete_task(conn, ids[0], 1, result=None, now=start + timedelta(seconds=2))
        store.claims.claim_task(conn, ids[1], 1, worker="w:2", now=start)
        store.claims.beat(conn, [(ids[1], 1)], start - timedelta(hours=1))  # its last heartbeat
    rescuer.sweep()
    samples = scrape(api)

    # Then the relay's and the rescuer's counters moved, and the durations are there
    assert samples[("jobplane_relay_published_total", ())] == 3
    assert (
        samples[("jobplane_sweeper_recoveries_total", (("kind", "recovered_from_lost_worker"),))]
        == 1
    )
    bucket = ("jobplane_task_duration_seconds_bucket", (("le", "5"), ("type", "demo.echo")))
    assert samples[bucket] == 1
    assert (
        samples[("jobplane_task_duration_seconds_bucket", (("le", "1"), ("type", "demo.echo")))]
        == 0
    )
    assert samples[("jobplane_task_retries", (("type", "demo.echo"),))] == 1
