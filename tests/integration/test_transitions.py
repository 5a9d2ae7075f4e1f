"""Every statement that changes a status moves a task exactly as the transition table allows.

Each status-changing statement of ``jobplane.store`` is listed here with the state it
moves a task to and, where it takes fewer states than the table allows, which ones.
For every source state, on PostgreSQL and SQLite: a task in that state is set up so
that the statement's other conditions hold, the statement runs, and the task must have
moved exactly when the statement's states (within the table's) include the source.
A scan of app/store fails when a statement that writes a status, or is guarded as a
transition, is not listed.
"""

from __future__ import annotations

import ast
import asyncio
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Connection, Engine, func, insert, select
from sqlalchemy.ext.asyncio import create_async_engine

from jobplane import service, store
from jobplane.domain import ALLOWED_FROM, INITIAL_STATES, InvalidTransition, TaskStatus
from jobplane.models import Outbox, Task, Workflow, WorkflowEdge, utcnow
from jobplane.settings import Settings
from jobplane.store import guards
from jobplane.store.recovery import Publication
from jobplane.store.rows import TaskRow

STORE = Path(store.__file__).parent
JOB = "demo.noop"


@dataclass(frozen=True)
class Statement:
    """A status-changing statement, run on one task (``now``: the test's clock)."""

    run: Callable[[Connection, TaskRow, datetime], object]
    #: The state it moves a task to.
    target: TaskStatus
    #: The states it takes, where fewer than the table's (None: all of ALLOWED_FROM).
    only: frozenset[TaskStatus] | None = None
    #: What else the task needs for the statement's other conditions to hold.
    given: dict[str, object] = field(default_factory=dict)
    #: Whether the task moved (before, after): by default its status or dispatch changed.
    moved: Callable[[TaskRow, TaskRow], bool] = lambda before, after: (
        (after.status, after.dispatch) != (before.status, before.dispatch)
    )
    #: Whether a move publishes the task again (an outbox row, a new dispatch number).
    publishes: bool = True

    @property
    def sources(self) -> frozenset[TaskStatus]:
        return ALLOWED_FROM[self.target] if self.only is None else self.only


def _refused(run: Callable[[Connection, TaskRow, datetime], object]) -> Callable[..., object]:
    """``run``, where an ``InvalidTransition`` (the statement refused) is no move."""

    def attempt(conn: Connection, task: TaskRow, now: datetime) -> object:
        try:
            return run(conn, task, now)
        except InvalidTransition:
            return None

    return attempt


RUNNING = frozenset({TaskStatus.RUNNING})
PENDING = frozenset({TaskStatus.PENDING})
STALE = {"heartbeat_at": datetime(2000, 1, 1).astimezone()}
WAITING = {"waiting_since": datetime(2000, 1, 1).astimezone()}

WORKFLOW = "workflow-of-the-test"


def in_workflow(conn: Connection, status: str, now: datetime) -> None:
    """The test's task is a step of a workflow in ``status``, with no other step."""
    conn.execute(
        insert(Workflow).values(
            id=WORKFLOW,
            status=status,
            shape="",
            steps=1,
            ends_left=1,
            created_at=now,
            updated_at=now,
        )
    )


#: Every status-changing statement, by module.function (variants after a space).
STATEMENTS: dict[str, Statement] = {
    "claims.claim_task": Statement(
        lambda conn, t, now: store.claims.claim_task(conn, t.id, 1, worker="w:1", now=now),
        TaskStatus.RUNNING,
    ),
    "claims.claim_tasks": Statement(
        lambda conn, t, now: store.claims.claim_tasks(conn, [(t.id, 1)], worker="w:1", now=now),
        TaskStatus.RUNNING,
    ),
    "claims.complete_task": Statement(
        lambda conn, t, now: store.claims.complete_task(conn, t.id, 1, result=1, now=now),
        TaskStatus.COMPLETED,
    ),
    "claims.complete_tasks": Statement(
        lambda conn, t, now: store.claims.complete_tasks(conn, [(t.id, 1, 1)], now),
        TaskStatus.COMPLETED,
    ),
    "claims.fail_task": Statement(
        lambda conn, t, now: store.claims.fail_task(conn, t.id, 1, error="boom", now=now),
        TaskStatus.FAILED,
    ),
    # Only a running attempt is retried, and only a running task given back.
    "claims.retry_task": Statement(
        lambda conn, t, now: store.claims.retry_task(
            conn, t.id, 1, error="boom", run_after=now, now=now
        ),
        TaskStatus.PENDING,
        RUNNING,
    ),
    "claims.release_unfinished": Statement(
        lambda conn, t, now: store.claims.release_unfinished(conn, [(t.id, 1)], now),
        TaskStatus.PENDING,
        RUNNING,
    ),
    # A running task is only asked to stop: its worker cancels it (mark_cancelled).
    "tasks.cancel_task": Statement(
        _refused(lambda conn, t, now: store.tasks.cancel_task(conn, t.id, now)),
        TaskStatus.CANCELLED,
        PENDING,
    ),
    "tasks.mark_cancelled": Statement(
        lambda conn, t, now: store.tasks.mark_cancelled(conn, t.id, 1, now),
        TaskStatus.CANCELLED,
    ),
    # An admin's retry: of a finished task that did not complete, never of a live one.
    "tasks.restart_task": Statement(
        _refused(lambda conn, t, now: store.tasks.restart_task(conn, t.id, now)),
        TaskStatus.PENDING,
        frozenset({TaskStatus.FAILED, TaskStatus.CANCELLED, TaskStatus.SKIPPED}),
    ),
    # Recovery only takes running tasks whose heartbeat stopped.
    "recovery.recover_stale_running cancel requested": Statement(
        lambda conn, _t, now: store.recovery.recover_stale_running(conn, now, now),
        TaskStatus.CANCELLED,
        RUNNING,
        {**STALE, "cancel_requested": True},
    ),
    "recovery.recover_stale_running retries left": Statement(
        lambda conn, _t, now: store.recovery.recover_stale_running(conn, now, now),
        TaskStatus.PENDING,
        RUNNING,
        STALE,
    ),
    "recovery.recover_stale_running no retry left": Statement(
        lambda conn, _t, now: store.recovery.recover_stale_running(conn, now, now),
        TaskStatus.FAILED,
        RUNNING,
        {**STALE, "retry_count": 3},
    ),
    # Published again: only a pending task (its message lost, or woken from waiting).
    "recovery.republish_pending": Statement(
        lambda conn, _t, now: store.recovery.republish_pending(conn, now=now),
        TaskStatus.PENDING,
        PENDING,
    ),
    "recovery.republish_pending only": Statement(
        lambda conn, t, now: store.recovery.republish_pending(
            conn, now=now, only=[Publication(t.id, 1, t.queue)]
        ),
        TaskStatus.PENDING,
        PENDING,
    ),
    # Parked: it stays pending, without a message, until a slot frees up.
    "concurrency.park_task": Statement(
        lambda conn, t, now: store.concurrency.park_task(conn, t.id, 1, now),
        TaskStatus.PENDING,
        PENDING,
        moved=lambda _before, after: after.waiting_since is not None,
        publishes=False,
    ),
    "concurrency.wake_waiting": Statement(
        lambda conn, _t, now: store.concurrency.wake_waiting(conn, JOB, 1, now),
        TaskStatus.PENDING,
        PENDING,
        WAITING,
    ),
    "concurrency.wake_stranded": Statement(
        lambda conn, _t, now: store.concurrency.wake_stranded(conn, now),
        TaskStatus.PENDING,
        PENDING,
        WAITING,
    ),
    # A workflow's steps: those waiting on a step that failed or was cancelled.
    "followups.cancel_after": Statement(
        lambda conn, t, now: (
            conn.execute(insert(WorkflowEdge).values(before_id="step-before", after_id=t.id)),
            store.followups.cancel_after(conn, ["step-before"], now),
        ),
        TaskStatus.CANCELLED,
        PENDING,
        publishes=False,
    ),
    # Published once the steps before it completed: a pending step only.
    "followups.publish_ready": Statement(
        lambda conn, t, now: store.followups.publish_ready(
            conn, [t.id], only={TaskStatus.PENDING}, now=now
        ),
        TaskStatus.PENDING,
        PENDING,
    ),
    # Pending steps at once; a running one is asked to stop (as tasks.cancel_task).
    "workflows.cancel_workflow": Statement(
        _refused(
            lambda conn, _t, now: (
                in_workflow(conn, "running", now),
                store.workflows.cancel_workflow(conn, WORKFLOW, now),
            )
        ),
        TaskStatus.CANCELLED,
        PENDING,
        {"workflow_id": WORKFLOW},
        publishes=False,
    ),
    # Its failed and cancelled steps start again; a workflow with a step running is refused.
    "workflows.retry_workflow": Statement(
        _refused(
            lambda conn, _t, now: (
                in_workflow(conn, "failed", now),
                store.workflows.retry_workflow(conn, WORKFLOW, now),
            )
        ),
        TaskStatus.PENDING,
        frozenset({TaskStatus.FAILED, TaskStatus.CANCELLED}),
        {"workflow_id": WORKFLOW},
    ),
}

#: The inserts, which create a task in a state (``INITIAL_STATES``), tested below (a
#: workflow's steps through ``insert_tasks``).
INSERTS = {
    "tasks.insert_tasks",
    "tasks.insert_tasks_async",
    "schedules.insert_scheduled_run",
    "workflows.insert_workflow",
}

#: The building blocks the statements above are made of, tested through them.
PRIMITIVES = {
    "requeue.requeue",
    "guards.guarded_update",
    "guards.may_become",
    "guards.may_become_in_batch",
    # What a task's end sets off: made of cancel_after, publish_ready and the workflow's
    # own status, tested through the statements that end tasks and in test_workflows.py.
    "followups.after_finished",
    # The cancel of pending tasks that tasks.cancel_task and workflows.cancel_workflow run.
    "tasks.cancel_pending",
}

#: Statements that write a ``status`` column of another table than the tasks': the fold
#: of the task counts (tested in test_task_counts.py).
NOT_TASKS = {"counts.fold"}

#: The status guards: a statement using one is a transition, whatever it writes.
GUARDS = {"guards.may_become", "guards.may_become_in_batch"}


def new_task(now: datetime, **columns: object) -> TaskRow:
    task = service.build_task(service.Submission(type=JOB), Settings(), now)
    return replace(task, **columns)


def given_a_task(engine: Engine, status: TaskStatus, **columns: object) -> TaskRow:
    """A task in ``status``, due, at dispatch 1, with 3 retries, without an outbox row."""
    now = utcnow()
    defaults = {"status": status.value, "max_retries": 3, "worker": "w:1", "heartbeat_at": now}
    task = new_task(now - timedelta(minutes=5), **{**defaults, **columns})
    with engine.begin() as conn:
        conn.execute(insert(Task).values(**task.columns()))
    return task


def read(engine: Engine, task_id: str) -> tuple[TaskRow, int]:
    """The task and how many outbox rows it has."""
    with engine.connect() as conn:
        task = store.tasks.get_task(conn, task_id)
        outbox = conn.execute(
            select(func.count()).select_from(Outbox).where(Outbox.task_id == task_id)
        ).scalar_one()
    assert task is not None
    return task, outbox


def cases() -> Iterator[tuple[str, TaskStatus]]:
    for name in STATEMENTS:
        for source in TaskStatus:
            yield name, source


@pytest.mark.parametrize(("name", "source"), list(cases()))
def test_a_statement_moves_a_task_exactly_when_the_transition_table_allows_it(
    any_engine: Engine, name: str, source: TaskStatus
) -> None:
    statement = STATEMENTS[name]
    # Given a task in the source state, its other conditions met
    task = given_a_task(any_engine, source, **statement.given)

    # When the statement runs
    now = utcnow()
    with any_engine.begin() as conn:
        statement.run(conn, task, now)

    # Then it moved, to the statement's target, exactly when the table (narrowed to the
    # statement's states) allows it from there; a task moved to pending was published
    # again: a new dispatch number, and an outbox row carrying it
    after, outbox = read(any_engine, task.id)
    moved = statement.moved(task, after)
    assert statement.sources <= ALLOWED_FROM[statement.target]
    assert moved == (source in statement.sources), (after.status, after.dispatch)
    if moved:
        assert after.status == statement.target
    published = moved and statement.target == TaskStatus.PENDING and statement.publishes
    assert (after.dispatch, outbox) == ((2, 1) if published else (task.dispatch, 0))
    # And a change of status is stamped (the live dashboard reads changes by it), and
    # the task counts moved with it
    if after.status != task.status:
        assert after.updated_at == now
    assert counted(any_engine) == tallied(any_engine)


def counted(engine: Engine) -> dict[tuple[str, str, str, str], tuple[int, int]]:
    """The tasks by (type, queue, schedule, status), and their retries, counted one by one."""
    key = (Task.type, Task.queue, func.coalesce(Task.schedule_name, ""), Task.status)
    with engine.connect() as conn:
        rows = conn.execute(
            select(*key, func.count(), func.sum(Task.retry_count)).group_by(*key)
        ).all()
    return {(t, q, s, st): (n, r) for t, q, s, st, n, r in rows}


def tallied(engine: Engine) -> dict[tuple[str, str, str, str], tuple[int, int]]:
    """The same, as the task counts the admin reads use say."""
    with engine.connect() as conn:
        rows = store.counts.task_counts(conn)
    return {(r.type, r.queue, r.schedule, r.status): (r.tasks, r.retries) for r in rows}


@pytest.mark.parametrize("status", list(TaskStatus))
def test_tasks_are_inserted_pending_or_refused(any_engine: Engine, status: TaskStatus) -> None:
    # Given a new task in some state
    task = new_task(utcnow(), status=status.value)

    # When it is inserted as a submission is
    def insert_it() -> None:
        with any_engine.begin() as conn:
            store.tasks.insert_tasks(conn, [task])

    # Then only a pending one is written (with its outbox row); any other is refused
    if status == TaskStatus.PENDING:
        insert_it()
        assert read(any_engine, task.id)[1] == 1
    else:
        with pytest.raises(ValueError, match="may not be created"):
            insert_it()
        with any_engine.connect() as conn:
            assert store.tasks.get_task(conn, task.id) is None
    assert TaskStatus.PENDING in INITIAL_STATES


@pytest.mark.parametrize("status", list(TaskStatus))
def test_the_async_insert_takes_only_pending_tasks_too(pg_url: str, status: TaskStatus) -> None:
    # Given a new task in some state
    task = new_task(utcnow(), status=status.value)

    # When the API's writer inserts it
    async def insert_it() -> None:
        engine = create_async_engine(pg_url)
        try:
            async with engine.begin() as conn:
                await store.tasks.insert_tasks_async(conn, [task])
        finally:
            await engine.dispose()

    # Then only a pending one is accepted
    if status == TaskStatus.PENDING:
        asyncio.run(insert_it())
    else:
        with pytest.raises(ValueError, match="may not be created"):
            asyncio.run(insert_it())


@pytest.mark.parametrize("with_outbox", [True, False], ids=["enqueued", "skipped"])
@pytest.mark.parametrize("status", list(TaskStatus))
def test_a_scheduled_run_is_recorded_pending_with_its_message_or_skipped_without(
    any_engine: Engine, status: TaskStatus, with_outbox: bool
) -> None:
    # Given a scheduled run's task in some state
    now = utcnow()
    task = new_task(now, status=status.value, schedule_name="nightly", fire_time=now)

    # When catch-up records it, enqueued (with an outbox row) or not
    def record() -> bool:
        with any_engine.begin() as conn:
            return store.schedules.insert_scheduled_run(conn, task, with_outbox=with_outbox)

    # Then it is recorded only pending and enqueued, or skipped and not: the states a
    # task is created in
    expected = TaskStatus.PENDING if with_outbox else TaskStatus.SKIPPED
    assert expected in INITIAL_STATES
    if status == expected:
        assert record()
        assert read(any_engine, task.id)[1] == (1 if with_outbox else 0)
    else:
        with pytest.raises(ValueError, match="may not be created"):
            record()


def test_a_guard_outside_the_transition_table_is_refused_as_it_is_built() -> None:
    with pytest.raises(ValueError, match="may not become running from failed"):
        guards.may_become(TaskStatus.RUNNING, {TaskStatus.FAILED})
    with pytest.raises(ValueError, match="may not become skipped from no state"):
        guards.may_become(TaskStatus.SKIPPED)
    with pytest.raises(ValueError, match="may not be created running"):
        guards.created_in({TaskStatus.RUNNING})
    assert guards.entered_from(TaskStatus.CANCELLED) == ["pending", "running"]


# -- every status-changing statement is listed ------------------------------------------


def _writes_status(node: ast.AST) -> bool:
    """Whether ``node`` itself sets a status: ``.values(status=…)``, a ``{"status": …}``
    of values, or an INSERT into tasks."""
    for child in ast.walk(node):
        if isinstance(child, ast.Dict) and any(
            isinstance(key, ast.Constant) and key.value == "status" for key in child.keys
        ):
            return True
        if not isinstance(child, ast.Call):
            continue
        called = getattr(child.func, "attr", getattr(child.func, "id", None))
        if called == "values" and any(kw.arg == "status" for kw in child.keywords):
            return True
        into_tasks = any(isinstance(arg, ast.Name) and arg.id == "Task" for arg in child.args)
        if called in ("insert", "insert_ignoring_conflict") and into_tasks:
            return True
    return False


def status_writers() -> set[str]:
    """The public functions of app/store that write a status or use a status guard,
    themselves or through anything they use (module constants, functions, imported
    store functions)."""
    definitions: dict[str, ast.AST] = {}  # module.name → its node
    uses: dict[str, set[str]] = {}  # module.name → the module.names it refers to
    for path in sorted(STORE.glob("*.py")):
        module = path.stem
        tree = ast.parse(path.read_text())
        local = {
            alias.asname or alias.name: f"{node.module.rsplit('.', 1)[-1]}.{alias.name}"
            for node in tree.body
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("jobplane.store")
            for alias in node.names
        }
        for node in tree.body:
            names = [getattr(node, "name", None)] + [
                target.id
                for target in getattr(node, "targets", [getattr(node, "target", None)])
                if isinstance(target, ast.Name)
            ]
            for name in filter(None, names):
                local[name] = f"{module}.{name}"
                definitions[f"{module}.{name}"] = node
        for qualified, node in definitions.items():
            if qualified.startswith(f"{module}."):
                referred = {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}
                uses[qualified] = {local[name] for name in referred if name in local}
    writers = {name for name, node in definitions.items() if _writes_status(node)} | GUARDS
    while True:
        more = {name for name, used in uses.items() if used & writers} - writers
        if not more:
            break
        writers |= more
    return {
        name
        for name in writers
        if isinstance(definitions[name], ast.FunctionDef | ast.AsyncFunctionDef)
        and not name.split(".")[1].startswith("_")
    }


def test_every_statement_of_the_store_that_writes_a_status_is_listed_here() -> None:
    listed = {name.split(" ")[0] for name in STATEMENTS} | INSERTS | PRIMITIVES
    found = status_writers() - NOT_TASKS
    assert found - listed == set(), "status-changing statements missing from STATEMENTS"
    assert listed - found == set(), "listed statements the scan does not see changing a status"
