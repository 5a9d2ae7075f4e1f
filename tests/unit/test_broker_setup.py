"""The broker a worker runs: which of Dramatiq's middleware apply to platform jobs."""

from __future__ import annotations

from types import SimpleNamespace

import dramatiq
from dramatiq.middleware import AgeLimit, Retries, TimeLimit

from jobplane.broker.factory import make_broker
from jobplane.db import make_engine
from jobplane.outbox.publisher import publish
from jobplane.registry import JobSpec
from jobplane.settings import Settings
from jobplane.workers.broker import declare_actor, worker_broker
from jobplane.workers.lifecycle import TaskLifecycle


def test_dramatiq_never_retries_or_expires_a_platform_job() -> None:
    broker = worker_broker(Settings(), lambda: make_engine("sqlite://"))
    kinds = {type(m) for m in broker.middleware}
    assert Retries not in kinds  # retries live in the database, with their backoff
    assert AgeLimit not in kinds  # a late message is never dropped by age
    assert {TaskLifecycle, TimeLimit} <= kinds
    # The claim comes first, so a dropped message never starts a timer.
    assert isinstance(broker.middleware[0], TaskLifecycle)
    assert "demo.sleep" in broker.actors


def test_every_message_carries_its_tasks_time_limit_not_dramatiqs_ten_minutes() -> None:
    broker = make_broker("memory://")
    row = SimpleNamespace(
        task_id="t", dispatch=3, type="demo.sleep", queue="q", timeout_seconds=14400
    )
    publish(broker, row)  # type: ignore[arg-type]
    message = dramatiq.Message.decode(broker.queues["q"].get_nowait())
    assert message.options["time_limit"] == 14400 * 1000
    assert message.kwargs == {"task_id": "t", "dispatch": 3}
    assert (message.actor_name, message.args) == ("demo.sleep", ())


def test_a_workers_prefetched_messages_run_the_higher_priority_job_type_first() -> None:
    # Dramatiq's work queue takes the lower actor priority first; jobplane's is higher first
    broker = make_broker("memory://")
    urgent = declare_actor(broker, JobSpec(name="t.urgent", fn=lambda: None, priority=9))
    usual = declare_actor(broker, JobSpec(name="t.usual", fn=lambda: None, priority=0))
    late = declare_actor(broker, JobSpec(name="t.late", fn=lambda: None, priority=-5))
    assert sorted([late, usual, urgent], key=lambda actor: actor.priority) == [urgent, usual, late]
