"""A worker's broker: the actors of every registered job, with the task lifecycle."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import dramatiq
from dramatiq.middleware import Middleware, TimeLimit
from sqlalchemy import Engine

from jobplane import registry, service
from jobplane.broker.factory import make_broker
from jobplane.domain import InvalidParams
from jobplane.registry import JobSpec
from jobplane.settings import Settings
from jobplane.timeouts import RedisTimeouts
from jobplane.workers import context
from jobplane.workers.lifecycle import TaskLifecycle
from jobplane.workers.retries import ParamsDoNotFit

#: Dramatiq's own TimeLimit default (10 min) must never apply silently: every message
#: the relay publishes carries its task's limit; this only covers a message without one.
FALLBACK_TIME_LIMIT_MS = 4 * 3600 * 1000


def worker_broker(
    settings: Settings,
    engine_factory: Callable[[], Engine],
    *,
    broker: dramatiq.Broker | None = None,
) -> dramatiq.Broker:
    """A broker that runs every registered job, with the task lifecycle around each.

    ``broker`` reuses an existing broker (``jobplane dev`` shares its in-memory one
    with the relay); otherwise one is made from ``settings.broker_url``.
    """
    lifecycle = TaskLifecycle(engine_factory=engine_factory, settings=settings)
    # Order matters: the claim runs first, so a dropped message never starts a timer.
    middleware: list[Middleware] = [lifecycle, TimeLimit(time_limit=FALLBACK_TIME_LIMIT_MS)]
    if broker is None:
        broker = make_broker(
            settings.broker_url, middleware, timeouts=RedisTimeouts.from_settings(settings)
        )
    else:
        for item in middleware:
            broker.add_middleware(item)
    for spec in registry.all_jobs():
        declare_actor(broker, spec)
    # Tasks may be submitted to a queue other than their job's default, and a worker
    # consumes only queues it declared.
    for queue in settings.worker_queue_names:
        broker.declare_queue(queue)
    dramatiq.set_broker(broker)
    return broker


def declare_actor(broker: dramatiq.Broker, spec: JobSpec) -> dramatiq.Actor[Any, Any]:
    """The actor that runs ``spec``: its message carries only the task id and dispatch."""

    def run(task_id: str, dispatch: int) -> None:  # noqa: ARG001 (read by the lifecycle)
        ctx = context.current_job()
        try:
            try:
                service.check_params_fit(spec, ctx.params)
            except InvalidParams as error:
                # Enqueued by a process that does not import this job: first checked here.
                raise ParamsDoNotFit(error.message) from None
            # The result goes to the task row (via the lifecycle), not to Dramatiq,
            # which would warn that it has no result backend to keep it in.
            ctx.result = spec.fn(**ctx.params)
        finally:
            ctx.on_body_end()  # from here on, a cancellation cannot interrupt this thread

    run.__name__ = run.__qualname__ = spec.name.replace(".", "_")
    return dramatiq.Actor(
        run,
        broker=broker,
        actor_name=spec.name,
        queue_name=spec.queue,
        # Dramatiq runs a worker's prefetched messages lower number first; jobplane's
        # priority is higher first: negated, the two orders agree.
        priority=-spec.priority,
        options={},
    )
