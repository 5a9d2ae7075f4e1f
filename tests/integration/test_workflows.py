"""Workflows against real databases: what each step's end publishes, counts and cancels.

Steps are run here by the store's own statements, as a worker's lifecycle runs them:
take the step's outbox row (the relay), claim it, complete or fail it.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, delete, select, text

import jobplane
from jobplane import store
from jobplane.domain import IdempotencyConflict, InvalidParams, InvalidTransition, WorkflowFailed
from jobplane.library import workflows
from jobplane.library.workflow_handles import WorkflowHandle
from jobplane.library.workflows import Step, chain, group
from jobplane.models import Outbox, Task, Workflow, WorkflowEdge, utcnow
from jobplane.registry import load_jobs
from jobplane.service import Submission
from jobplane.settings import Settings

SETTINGS = Settings()


def step(n: int = 0, *, pipe: bool = False, **params: Any) -> Step:
    return Step(Submission(type="demo.echo", params={"n": n, **params}), pipe_result=pipe)


def takes(pipe: bool = True) -> Step:
    """A step that takes the result before it (``demo.echo`` returns its params)."""
    return Step(Submission(type="demo.echo"), pipe_result=pipe)


def submit(engine: Engine, node: workflows.Node) -> workflows.WorkflowPlan:
    with engine.begin() as conn:
        written = workflows.submit(conn, node, SETTINGS, utcnow()).plan
    assert written is not None
    return written


def published(engine: Engine) -> dict[str, int]:
    """The steps with an outbox row (task id → dispatch): what the relay would publish."""
    with engine.connect() as conn:
        return dict(conn.execute(select(Outbox.task_id, Outbox.dispatch)).all())


def take(engine: Engine, task_id: str) -> int:
    """The relay takes the step's outbox row; its dispatch number."""
    dispatch = published(engine)[task_id]
    with engine.begin() as conn:
        conn.execute(delete(Outbox).where(Outbox.task_id == task_id))
    return dispatch


def run(engine: Engine, task_id: str, result: Any) -> None:
    """A worker runs the step and it completes with ``result``."""
    dispatch = take(engine, task_id)
    with engine.begin() as conn:
        claimed = store.claims.claim_task(conn, task_id, dispatch, worker="w:1", now=utcnow())
        assert claimed is not None
    with engine.begin() as conn:
        assert store.claims.complete_task(conn, task_id, dispatch, result=result, now=utcnow())


def fail(engine: Engine, task_id: str) -> None:
    dispatch = take(engine, task_id)
    with engine.begin() as conn:
        assert store.claims.claim_task(conn, task_id, dispatch, worker="w:1", now=utcnow())
        assert store.claims.fail_task(conn, task_id, dispatch, error="boom", now=utcnow())


def task(engine: Engine, task_id: str) -> Any:
    with engine.connect() as conn:
        return store.tasks.get_task(conn, task_id)


def workflow(engine: Engine, workflow_id: str) -> Any:
    with engine.connect() as conn:
        return store.workflows.get_workflow(conn, workflow_id)


def ids(plan: workflows.WorkflowPlan) -> list[str]:
    return [row.id for row in plan.tasks]


def test_a_chain_publishes_each_step_when_the_one_before_completes_with_its_result(
    any_engine: Engine,
) -> None:
    # Given a chain of three steps, the last two taking the result before them
    plan = submit(any_engine, chain(step(1), takes(), takes()))
    first, second, third = ids(plan)

    # Then only the first is published; the others wait, pending
    assert set(published(any_engine)) == {first}
    assert task(any_engine, second).status == "pending"
    assert task(any_engine, second).waiting_on == 1

    # When the first completes, the second is published with its result as ``result``
    run(any_engine, first, {"n": 1})
    assert set(published(any_engine)) == {second}
    assert task(any_engine, second).params == {"result": {"n": 1}}

    run(any_engine, second, 5)
    assert task(any_engine, third).params == {"result": 5}
    assert workflow(any_engine, plan.workflow_id).status == "running"

    # And the last step's completion completes the workflow, whose result is its
    run(any_engine, third, 6)
    done = workflow(any_engine, plan.workflow_id)
    assert (done.status, done.ends_left, done.completed_steps) == ("completed", 0, 3)
    assert WorkflowHandle(plan.workflow_id, engine=any_engine).wait(timeout=5) == 6


def test_a_group_then_step_starts_once_after_every_member_with_their_results_in_order(
    any_engine: Engine,
) -> None:
    plan = submit(any_engine, group(step(i) for i in range(5)).then(takes()))
    *members, then = ids(plan)
    assert set(published(any_engine)) == set(members)

    # Members complete in another order than theirs
    for place in (3, 0, 4, 1):
        run(any_engine, members[place], place * 10)
        assert then not in published(any_engine)
    run(any_engine, members[2], 20)

    # The then step is published once, with the results in the members' order
    assert set(published(any_engine)) == {then}
    assert task(any_engine, then).params == {"result": [0, 10, 20, 30, 40]}
    run(any_engine, then, 100)
    assert workflow(any_engine, plan.workflow_id).status == "completed"


def test_nested_groups_and_chains_pass_the_results_their_shapes_give(any_engine: Engine) -> None:
    # chain(a, group(chain(b, c), d), e taking the result before it)
    plan = submit(any_engine, chain(step(1), group(chain(step(2), step(3)), step(4)), takes()))
    a, b, c, d, e = ids(plan)
    assert plan.shape == {"chain": [a, {"group": [{"chain": [b, c]}, d]}, e]}
    run(any_engine, a, "a")
    assert set(published(any_engine)) == {b, d}
    run(any_engine, d, "d")
    run(any_engine, b, "b")
    assert set(published(any_engine)) == {c}
    run(any_engine, c, "c")
    assert task(any_engine, e).params == {"result": ["c", "d"]}
    run(any_engine, e, "e")
    assert WorkflowHandle(plan.workflow_id, engine=any_engine).wait(timeout=5) == "e"


def test_a_failed_middle_step_fails_the_workflow_and_a_retry_completes_it(
    any_engine: Engine,
) -> None:
    plan = submit(any_engine, chain(step(1), step(2), step(3), step(4)))
    first, second, third, fourth = ids(plan)
    run(any_engine, first, 1)

    # When the second step fails after its retries
    fail(any_engine, second)

    # Then the workflow failed, naming it, and the steps after it were cancelled unstarted
    failed = workflow(any_engine, plan.workflow_id)
    assert failed.status == "failed"
    assert second in (failed.error or "") and "boom" in (failed.error or "")
    for later in (third, fourth):
        assert (task(any_engine, later).status, task(any_engine, later).attempts) == (
            "cancelled",
            0,
        )
    assert published(any_engine) == {}
    with pytest.raises(WorkflowFailed, match="boom"):
        WorkflowHandle(plan.workflow_id, engine=any_engine).wait(timeout=5)

    # When it is retried: from the failed step, the one that completed left alone
    with any_engine.begin() as conn:
        retried = store.workflows.retry_workflow(conn, plan.workflow_id, utcnow())
    assert retried.status == "running"
    assert set(published(any_engine)) == {second}
    assert task(any_engine, first).attempts == 1
    for later in (second, third, fourth):
        assert task(any_engine, later).status == "pending"
    run(any_engine, second, 2)
    run(any_engine, third, 3)
    run(any_engine, fourth, 4)
    assert workflow(any_engine, plan.workflow_id).status == "completed"
    assert task(any_engine, first).attempts == 1


def test_cancelling_a_workflow_cancels_what_is_not_finished(any_engine: Engine) -> None:
    plan = submit(any_engine, chain(group(step(1), step(2)), step(3)))
    one, two, three = ids(plan)
    run(any_engine, one, 1)
    dispatch = take(any_engine, two)
    with any_engine.begin() as conn:
        assert store.claims.claim_task(conn, two, dispatch, worker="w:1", now=utcnow())

    with any_engine.begin() as conn:
        cancelled = store.workflows.cancel_workflow(conn, plan.workflow_id, utcnow())

    assert cancelled.status == "cancelled"
    assert task(any_engine, one).status == "completed"
    assert (task(any_engine, two).status, task(any_engine, two).cancel_requested) == (
        "running",
        True,
    )
    assert task(any_engine, three).status == "cancelled"
    # Its running step, once stopped, is cancelled; nothing after it runs
    with any_engine.begin() as conn:
        assert store.tasks.mark_cancelled(conn, two, dispatch, utcnow())
    assert published(any_engine) == {}
    with any_engine.begin() as conn, pytest.raises(InvalidTransition):
        store.workflows.cancel_workflow(conn, plan.workflow_id, utcnow())


def test_cancelling_one_step_cancels_the_steps_after_it_and_the_workflow(
    any_engine: Engine,
) -> None:
    plan = submit(any_engine, chain(step(1), step(2)))
    first, second = ids(plan)
    with any_engine.begin() as conn:
        store.tasks.cancel_task(conn, first, utcnow())
    assert task(any_engine, second).status == "cancelled"
    assert workflow(any_engine, plan.workflow_id).status == "cancelled"


def test_two_members_completing_at_once_start_the_then_step_exactly_once(
    pg_engine: Engine,
) -> None:
    # Given a group of two whose members are both running
    plan = submit(pg_engine, group(step(1), step(2)).then(takes()))
    left, right, then = ids(plan)
    dispatches = {}
    for member in (left, right):
        dispatches[member] = take(pg_engine, member)
        with pg_engine.begin() as conn:
            assert store.claims.claim_task(
                conn, member, dispatches[member], worker="w:1", now=utcnow()
            )

    # When both complete in two transactions at the same instant (two hosts)
    barrier = threading.Barrier(2)

    def complete(member: str) -> None:
        with pg_engine.begin() as conn:
            conn.execute(text("SELECT 1"))
            barrier.wait(timeout=10)
            assert store.claims.complete_task(
                conn, member, dispatches[member], result=member, now=utcnow()
            )

    threads = [threading.Thread(target=complete, args=(member,)) for member in (left, right)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    # Then the then step was published once, with both results
    with pg_engine.connect() as conn:
        rows = conn.execute(select(Outbox.task_id).where(Outbox.task_id == then)).all()
    assert len(rows) == 1
    assert task(pg_engine, then).params == {"result": [left, right]}


@pytest.mark.parametrize(
    ("node", "message"),
    [
        (chain(), "workflow: a chain needs at least one member"),
        (group(step(1), chain()), r"workflow.group\[1\]: a chain needs at least one member"),
        (chain(takes()), r"workflow.chain\[0\]: pipeResult, but no step runs before it"),
        (
            chain(step(1), step(2, pipe=True, result=3)),
            r"workflow.chain\[1\]: pipeResult sets the 'result' param",
        ),
        (
            chain(step(1), Step(Submission(type="demo.nope"))),
            r"workflow.chain\[1\]: unknown job type 'demo.nope'",
        ),
    ],
)
def test_a_wrong_workflow_is_refused_naming_its_step_and_writes_nothing(
    any_engine: Engine, node: workflows.Node, message: str
) -> None:
    with pytest.raises(jobplane.JobplaneError, match=message):
        submit(any_engine, node)
    with any_engine.connect() as conn:
        assert conn.execute(select(Workflow.id)).all() == []
        assert conn.execute(select(Task.id)).all() == []


def test_a_workflow_larger_than_the_limit_is_refused(
    any_engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(workflows, "MAX_STEPS", 3)
    with pytest.raises(InvalidParams, match="at most 3 steps"):
        submit(any_engine, group(step(i) for i in range(4)))


def test_a_rolled_back_transaction_leaves_no_workflow_task_or_message(
    any_engine: Engine,
) -> None:
    with any_engine.connect() as conn:
        transaction = conn.begin()
        handle = jobplane.enqueue(conn, chain(step(1), step(2)))
        assert isinstance(handle, WorkflowHandle)
        transaction.rollback()
    with any_engine.connect() as conn:
        for model in (Workflow, Task, Outbox):
            assert conn.execute(select(model)).all() == []


def test_callbacks_run_as_tasks_of_their_own_with_the_task_id_and_result_or_error(
    any_engine: Engine,
) -> None:
    on_done = Submission(type="demo.echo", params={"n": 7})
    submissions = [
        Submission(type="demo.echo", params={"n": 1}, on_success=on_done, on_failure=on_done),
        Submission(type="demo.echo", params={"n": 2}, on_success=on_done, on_failure=on_done),
    ]
    with any_engine.begin() as conn:
        ok, bad = (store_task(conn, s) for s in submissions)
    run(any_engine, ok, {"fine": True})
    fail(any_engine, bad)
    with any_engine.connect() as conn:
        callbacks = conn.execute(
            select(Task.params).where(Task.id.not_in([ok, bad])).order_by(Task.created_at)
        ).scalars()
        made = sorted(callbacks, key=lambda params: params["task_id"] == bad)
    assert made == [
        {"n": 7, "task_id": ok, "result": {"fine": True}},
        {"n": 7, "task_id": bad, "error": "boom"},
    ]


def store_task(conn: Any, submission: Submission) -> str:
    row, _ = jobplane.service.submit(conn, submission, SETTINGS, utcnow())
    return row.id


def test_a_task_of_its_own_has_no_follow_ups_and_a_step_has(any_engine: Engine) -> None:
    # What keeps plain tasks on the worker's group-committed completion path
    with any_engine.begin() as conn:
        plain = store_task(conn, Submission(type="demo.echo"))
    plan = submit(any_engine, chain(step(1)))
    for task_id, expected in ((plain, False), (ids(plan)[0], True)):
        dispatch = take(any_engine, task_id)
        with any_engine.begin() as conn:
            claimed = store.claims.claim_task(conn, task_id, dispatch, worker="w:1", now=utcnow())
        assert claimed is not None and claimed.follow_ups is expected


def test_a_broker_loss_republishes_published_steps_only_never_a_waiting_one(
    any_engine: Engine,
) -> None:
    # Given a chain whose first step was published (its outbox row taken)
    plan = submit(any_engine, chain(step(1), takes()))
    first, second = ids(plan)
    take(any_engine, first)

    # When maintenance republishes every published task (the broker lost its data)
    with any_engine.begin() as conn:
        republished = store.recovery.republish_pending(conn, now=utcnow())

    # Then the first step is published again; the second still waits for it
    assert republished == [first]
    assert set(published(any_engine)) == {first}
    assert task(any_engine, second).waiting_on == 1


def test_retention_deletes_ended_workflows_whole_and_never_a_live_ones_steps(
    any_engine: Engine,
) -> None:
    # Given an ended workflow and a running one, both long finished steps
    ended = submit(any_engine, chain(step(1), step(2)))
    for task_id in ids(ended):
        run(any_engine, task_id, 1)
    live = submit(any_engine, chain(step(3), step(4)))
    run(any_engine, ids(live)[0], 3)
    later = utcnow() + timedelta(days=30)

    # When retention runs as if a month had passed
    with any_engine.begin() as conn:
        tasks_deleted = store.retention.delete_finished_before(conn, later, 1000)
        workflows_deleted = store.workflows.delete_finished_before(conn, later, 10)

    # Then the ended workflow went with its steps and edges; the running one is whole
    assert (tasks_deleted, workflows_deleted) == (0, 1)
    assert workflow(any_engine, ended.workflow_id) is None
    assert all(task(any_engine, task_id) is None for task_id in ids(ended))
    assert [task(any_engine, task_id).status for task_id in ids(live)] == ["completed", "pending"]
    with any_engine.connect() as conn:
        edges = conn.execute(select(WorkflowEdge.before_id)).scalars().all()
    assert edges == [ids(live)[0]]


def test_a_job_types_callbacks_apply_unless_the_submission_names_its_own() -> None:
    load_jobs(["tests.workflow_jobs"])
    now = utcnow()
    by_type = jobplane.service.build_task(Submission("wf.report", {"month": "11"}), SETTINGS, now)
    assert by_type.callbacks is not None
    assert by_type.callbacks["onSuccess"]["type"] == "wf.notify"
    assert by_type.callbacks["onFailure"]["type"] == "wf.notify"
    own = Submission("wf.notify", {"channel": "ops"})
    chosen = jobplane.service.build_task(
        Submission("wf.report", {"month": "11"}, on_success=own), SETTINGS, now
    )
    assert chosen.callbacks is not None
    assert chosen.callbacks["onSuccess"]["params"] == {"channel": "ops"}

    # A callback whose job cannot take what it is called with is refused at submission
    with pytest.raises(InvalidParams, match="onSuccess: "):
        jobplane.service.build_task(
            Submission("demo.echo", on_success=Submission("demo.noop")), SETTINGS, now
        )
    with pytest.raises(InvalidParams, match="set by jobplane"):
        jobplane.service.build_task(
            Submission("demo.echo", on_success=Submission("wf.notify", {"task_id": "x"})),
            SETTINGS,
            now,
        )


def test_a_key_used_again_returns_the_written_workflow_and_writes_nothing(
    any_engine: Engine,
) -> None:
    # Given a workflow written with an idempotency key
    node = chain(step(1), group(step(2), step(3)).then(takes()))
    with any_engine.begin() as conn:
        first = workflows.submit(conn, node, SETTINGS, utcnow(), idempotency_key="k-1")
    assert first.created and first.plan is not None
    with any_engine.connect() as conn:
        written = conn.execute(select(Workflow.idempotency_key, Workflow.request_hash)).one()
    assert written == ("k-1", workflows.fingerprint(node))

    # When the same tree (built anew) comes again with the key
    again_node = chain(step(1), group(step(2), step(3)).then(takes()))
    with any_engine.begin() as conn:
        again = workflows.submit(conn, again_node, SETTINGS, utcnow(), idempotency_key="k-1")

    # Then it is the first workflow, not new, and nothing more was written
    assert (again.workflow_id, again.created, again.plan) == (first.workflow_id, False, None)
    with any_engine.connect() as conn:
        assert conn.execute(select(Workflow.id)).scalars().all() == [first.workflow_id]
        assert len(conn.execute(select(Task.id)).all()) == 4


def test_the_same_key_for_another_workflow_is_a_conflict_naming_the_first(
    any_engine: Engine,
) -> None:
    with any_engine.begin() as conn:
        first = workflows.submit(conn, chain(step(1)), SETTINGS, utcnow(), idempotency_key="k")
    for other in (chain(step(2)), group(step(1)), chain(step(1), step(1))):
        with any_engine.begin() as conn, pytest.raises(IdempotencyConflict) as conflict:
            workflows.submit(conn, other, SETTINGS, utcnow(), idempotency_key="k")
        assert conflict.value.workflow_id == first.workflow_id
        assert conflict.value.task_id is None
        assert first.workflow_id in conflict.value.message
    with any_engine.connect() as conn:
        assert conn.execute(select(Workflow.id)).scalars().all() == [first.workflow_id]


def test_concurrent_submissions_with_one_key_write_one_workflow(pg_engine: Engine) -> None:
    # Given eight clients that send the same workflow with the same key at once
    node = chain(step(1), group(step(2), step(3)))
    clients = 8
    barrier = threading.Barrier(clients)

    def send() -> tuple[str, bool]:
        with pg_engine.begin() as conn:
            conn.execute(text("SELECT 1"))
            barrier.wait(timeout=10)
            submitted = workflows.submit(conn, node, SETTINGS, utcnow(), idempotency_key="race")
            return submitted.workflow_id, submitted.created

    with ThreadPoolExecutor(clients) as pool:
        answers = [
            future.result(timeout=30) for future in [pool.submit(send) for _ in range(clients)]
        ]

    # Then one workflow was written, one client made it, and every client got its id
    with pg_engine.connect() as conn:
        written = conn.execute(select(Workflow.id)).scalars().all()
        steps = conn.execute(select(Task.id)).all()
    assert len(written) == 1
    assert [workflow_id for workflow_id, _ in answers] == written * clients
    assert sorted(created for _, created in answers) == [False] * (clients - 1) + [True]
    assert len(steps) == 3
