"""Prometheus metrics at ``/metrics``, computed from the database at scrape time.

The database is the source of truth, so the API serves the platform's numbers for
every process: tasks by status and type, the outbox backlog and its oldest row, the
workers seen, retries, scheduled runs by outcome, recent job durations, and the
counters relays and the maintenance leader push through the database
(``jobplane.counters``). Relays, workers and maintenance serve no metrics endpoint of
their own. A scrape reads no more rows at ten million tasks than at ten: the task
counts, the workers' reports and a bounded sample of recent durations.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import timedelta

from fastapi import APIRouter, Request, Response
from prometheus_client import CollectorRegistry, PlatformCollector, ProcessCollector
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeHistogramMetricFamily,
    GaugeMetricFamily,
    Metric,
)
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from jobplane import counters, registry, store
from jobplane.api.stats import WORKERS_SEEN_WINDOW
from jobplane.domain import TaskStatus
from jobplane.models import utcnow
from jobplane.store.rows import CounterRow, DurationRow, TaskCountRow

router = APIRouter(tags=["health"])


class DatabaseCollector(Collector):
    """Gauges read from the database at each scrape (nothing is kept in memory)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("jobplane_database_up", "1 if the database answered this scrape.")
        now = utcnow()
        try:
            with self.engine.connect() as conn:
                counts = store.counts.task_counts(conn)
                backlog, oldest = store.stats.outbox_backlog(conn)
                workers = store.workers.seen_since(
                    conn, now - timedelta(seconds=WORKERS_SEEN_WINDOW)
                )
                pushed = store.stats.read_counters(conn)
                durations = store.stats.recent_durations(
                    conn, now - DURATION_WINDOW, DURATION_BUCKETS, sample=DURATION_SAMPLE
                )
        except SQLAlchemyError:
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield _tasks(counts)
        yield GaugeMetricFamily(
            "jobplane_outbox_backlog", "Outbox rows not yet published.", value=backlog
        )
        age = max(0.0, (now - oldest).total_seconds()) if oldest else 0.0
        yield GaugeMetricFamily(
            "jobplane_outbox_oldest_age_seconds",
            "Age of the oldest outbox row (0 when the outbox is empty).",
            value=age,
        )
        yield GaugeMetricFamily(
            "jobplane_workers_seen",
            f"Workers that reported in the last {WORKERS_SEEN_WINDOW:.0f} s.",
            value=len(workers),
        )
        yield from _pushed(pushed)
        yield _durations(durations)
        yield _labelled(
            "jobplane_task_retries",
            "Retries of the tasks kept, by job type.",
            ["type"],
            _summed(counts, lambda row: (row.type,), lambda row: row.retries).items(),
        )
        yield _labelled(
            "jobplane_schedule_runs",
            "Scheduled runs kept, by schedule and status (skipped: the misfire policy).",
            ["schedule", "status"],
            _summed(
                (row for row in counts if row.schedule),
                lambda row: (row.schedule, row.status),
                lambda row: row.tasks,
            ).items(),
        )


#: Upper bounds (seconds) of the job duration histogram's buckets.
DURATION_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 15.0, 60.0, 300.0, 1800.0, 3600.0, 14400.0)
#: The duration histogram covers the tasks that completed this recently…
DURATION_WINDOW = timedelta(hours=1)
#: …and of them at most this many, the newest: a sample, so a busy hour costs a scrape
#: no more than a quiet one.
DURATION_SAMPLE = 1000


def _pushed(rows: Iterable[CounterRow]) -> Iterator[Metric]:
    """The counters of ``jobplane.counters``; an unlabelled one is 0 until pushed to."""
    values = {(row.name, row.label): row.value for row in rows}
    for spec in counters.ALL:
        family = CounterMetricFamily(
            spec.name, spec.help, labels=[spec.label] if spec.label else []
        )
        if spec.label is None:
            family.add_metric([], values.get((spec.name, ""), 0))
        else:
            for (name, label), value in sorted(values.items()):
                if name == spec.name:
                    family.add_metric([label], value)
        yield family


def _durations(rows: Iterable[DurationRow]) -> GaugeHistogramMetricFamily:
    family = GaugeHistogramMetricFamily(
        "jobplane_task_duration_seconds",
        f"Run time of the last {DURATION_SAMPLE} tasks (at most) that completed in the"
        " last hour, by job type.",
        labels=["type"],
    )
    for row in rows:
        buckets = [
            (f"{bound:g}", count) for bound, count in zip(DURATION_BUCKETS, row.within, strict=True)
        ]
        family.add_metric([row.type], [*buckets, ("+Inf", row.count)], row.seconds)
    return family


def _labelled(
    name: str, help_text: str, labels: list[str], samples: Iterable[tuple[Sequence[str], int]]
) -> GaugeMetricFamily:
    """A gauge of (label values, value) samples."""
    family = GaugeMetricFamily(name, help_text, labels=labels)
    for values, value in samples:
        family.add_metric(values, value)
    return family


def _summed(
    rows: Iterable[TaskCountRow],
    key: Callable[[TaskCountRow], tuple[str, ...]],
    value: Callable[[TaskCountRow], int],
) -> dict[tuple[str, ...], int]:
    """The ``value`` of ``rows`` added up by ``key`` (label values), in label order."""
    sums: dict[tuple[str, ...], int] = {}
    for row in rows:
        sums[key(row)] = sums.get(key(row), 0) + value(row)
    return dict(sorted(sums.items()))


def _tasks(rows: Iterable[TaskCountRow]) -> GaugeMetricFamily:
    """Every (status, type) pair of the known types and statuses, zeros included."""
    counts = _summed(rows, lambda row: (row.status, row.type), lambda row: row.tasks)
    types = sorted({*registry.known_types(), *(job_type for _, job_type in counts)})
    statuses = sorted({*(status.value for status in TaskStatus), *(s for s, _ in counts)})
    family = GaugeMetricFamily(
        "jobplane_tasks", "Tasks by status and job type.", labels=["status", "type"]
    )
    for status in statuses:
        for job_type in types:
            family.add_metric([status, job_type], counts.get((status, job_type), 0))
    return family


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"description": "Prometheus text format", "content": {"text/plain": {}}}},
)
def metrics(request: Request) -> Response:
    """Prometheus metrics: tasks by status and type, outbox backlog and age, workers seen."""
    scrape = CollectorRegistry(auto_describe=False)
    scrape.register(DatabaseCollector(request.app.state.engine))
    ProcessCollector(registry=scrape)
    PlatformCollector(registry=scrape)
    encoder, content_type = choose_encoder(request.headers.get("accept", ""))
    return Response(encoder(scrape), media_type=content_type)
