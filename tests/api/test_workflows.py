"""Workflows over HTTP: submitting one, reading it back, the list, cancel and retry, bad
input; callbacks on a task's submission; a step's own retry refused."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, select, update

from jobplane.library.workflows import MAX_STEPS
from jobplane.models import Outbox, Task, Workflow
from tests.api.test_submit import raw_post
from tests.conftest import row_counts


@pytest.fixture
def api(
    api_on: Callable[[str], tuple[httpx.Client, Engine]], any_url: str
) -> tuple[httpx.Client, Engine]:
    """The API over HTTP on PostgreSQL, then on SQLite, and its engine."""
    return api_on(any_url)


def echo(n: int, **options: Any) -> dict[str, Any]:
    return {"type": "demo.echo", "params": {"n": n}, **options}


#: A chain: a step, then a group of two whose results a last step takes.
CHAIN_WITH_GROUP = {
    "chain": [
        echo(1),
        {
            "group": [echo(2), echo(3, priority=5)],
            "then": {"type": "demo.echo", "pipeResult": True},
        },
    ]
}


def fail_step(engine: Engine, task_id: str) -> None:
    """The step ends failed, as its last attempt would (no worker runs in these tests)."""
    with engine.begin() as conn:
        conn.execute(update(Task).where(Task.id == task_id).values(status="failed", error="boom"))


def test_a_chain_with_a_group_answers_201_with_its_steps_in_order(
    api: tuple[httpx.Client, Engine],
) -> None:
    client, engine = api
    # When a client submits a chain whose second member is a group with a step after it
    response = client.post("/api/workflows", json=CHAIN_WITH_GROUP)

    # Then it gets the running workflow with its four steps, in the order of the shape
    assert response.status_code == 201, response.text
    workflow = response.json()
    assert workflow["status"] == "running"
    assert (workflow["stepCount"], workflow["percent"], workflow["result"]) == (4, 0, None)
    assert workflow["stepsByStatus"]["pending"] == 4
    steps = workflow["steps"]
    assert [step["taskType"] for step in steps] == ["demo.echo"] * 4
    assert [step["waitingOn"] for step in steps] == [0, 1, 1, 2]
    assert {step["workflowId"] for step in steps} == {workflow["workflowId"]}
    assert steps[2]["priority"] == 5
    ids = [step["taskId"] for step in steps]
    assert workflow["shape"] == {"chain": [ids[0], {"group": ids[1:3], "then": ids[3]}]}
    # And only the first step is published; the others wait for the steps before them
    with engine.connect() as conn:
        assert list(conn.execute(select(Outbox.task_id)).scalars()) == [ids[0]]
    # And the workflow reads back the same, and each step is a task with its workflow
    assert client.get(f"/api/admin/workflows/{workflow['workflowId']}").json() == workflow
    task = client.get(f"/api/admin/tasks/{ids[3]}").json()
    assert task["workflowId"] == workflow["workflowId"]
    assert client.get("/api/admin/tasks").json()["tasks"][0]["workflowId"] is not None


def test_a_group_at_the_top_and_steps_with_callbacks_are_accepted(
    api: tuple[httpx.Client, Engine],
) -> None:
    client, _engine = api
    body = {
        "group": [
            {**echo(1), "onSuccess": {"type": "demo.echo", "params": {"tag": "ok"}}},
            {"chain": [echo(2), echo(3)]},
        ]
    }
    workflow = client.post("/api/workflows", json=body).json()
    assert workflow["stepCount"] == 3
    ids = [step["taskId"] for step in workflow["steps"]]
    assert workflow["shape"] == {"group": [ids[0], {"chain": ids[1:]}]}
    assert [step["waitingOn"] for step in workflow["steps"]] == [0, 0, 1]


#: Bad workflows: (body, error code, where the message says the fault is).
BAD_WORKFLOWS: list[tuple[Any, str, str]] = [
    # what the schema refuses: the place is named as the library names it
    ({"chain": [echo(1), {"type": "demo.echo", "bogus": 1}]}, "invalid_request",
     "workflow.chain[1].bogus"),
    ({"group": [echo(1)], "then": {"type": "demo.echo", "priority": 5000}},
     "invalid_request", "workflow.then.priority"),
    ({"chain": [echo(1)], "extra": True}, "invalid_request", "workflow.extra"),
    ({"chain": []}, "invalid_request", "workflow.chain"),
    ({"type": "demo.echo"}, "invalid_request", "workflow"),
    ([echo(1)], "invalid_request", "workflow"),
    ({"chain": [echo(1), {"type": "demo.echo", "onSuccess": {"type": "demo.echo",
      "delaySeconds": 1}}]}, "invalid_request", "workflow.chain[1].onSuccess.delaySeconds"),
    # what the planner refuses, with the step's path too
    ({"chain": [echo(1), {"group": [{"type": "nope"}]}]}, "unknown_job_type",
     "workflow.chain[1].group[0]"),
    ({"chain": [{"type": "demo.sleep", "params": {"nope": 1}}]}, "invalid_params",
     "workflow.chain[0]"),
    ({"chain": [{"type": "demo.echo", "pipeResult": True}]}, "invalid_params",
     "workflow.chain[0]"),
]  # fmt: skip


def test_bad_input_is_a_422_naming_the_step_and_writes_nothing(
    api: tuple[httpx.Client, Engine],
) -> None:
    client, engine = api
    for body, code, where in BAD_WORKFLOWS:
        response = client.post("/api/workflows", json=body)
        assert response.status_code == 422, response.text
        assert response.json()["error"] == code, response.text
        assert response.json()["message"].startswith(f"{where}: "), response.json()["message"]
    assert row_counts(engine)["tasks"] == 0


def test_nesting_is_bounded_and_so_is_the_number_of_steps(
    api: tuple[httpx.Client, Engine],
) -> None:
    client, engine = api
    # A chain in a chain… 40 levels deep (the JSON parser takes it; the API does not)
    deep: dict[str, Any] = {"chain": [echo(0)]}
    for _ in range(40):
        deep = {"chain": [deep]}
    response = client.post("/api/workflows", json=deep)
    assert response.status_code == 422, response.text
    assert "nest at most 32 levels" in response.json()["message"]
    # 32 levels is accepted
    ok: dict[str, Any] = {"chain": [echo(0)]}
    for _ in range(31):
        ok = {"group": [ok]}
    assert client.post("/api/workflows", json=ok).status_code == 201
    # Nested far deeper than any parser goes: a 422 as well, never a 500
    text = '{"chain": [' * 5000 + json.dumps(echo(0)) + "]}" * 5000
    headers = {"Content-Type": "application/json"}
    assert client.post("/api/workflows", content=text, headers=headers).status_code == 422
    # One step too many
    many = {"group": [{"type": "demo.noop"}] * (MAX_STEPS + 1)}
    response = client.post("/api/workflows", json=many)
    assert response.status_code == 422
    assert f"at most {MAX_STEPS} steps" in response.json()["message"]
    assert row_counts(engine)["tasks"] == 1  # the workflow 32 levels deep


def test_the_list_is_paged_newest_first_and_filtered_by_status(
    api: tuple[httpx.Client, Engine],
) -> None:
    client, engine = api
    made = [client.post("/api/workflows", json={"chain": [echo(n)]}).json() for n in range(3)]
    fail_step(engine, made[0]["steps"][0]["taskId"])
    client.post(f"/api/admin/workflows/{made[0]['workflowId']}/cancel")

    page = client.get("/api/admin/workflows", params={"pageSize": 2}).json()
    assert (page["total"], page["page"], page["pageSize"]) == (3, 1, 2)
    listed = [w["workflowId"] for w in page["workflows"]]
    second = client.get("/api/admin/workflows", params={"pageSize": 2, "page": 2}).json()
    listed += [w["workflowId"] for w in second["workflows"]]
    assert sorted(listed) == sorted(w["workflowId"] for w in made)
    summary = page["workflows"][0]
    assert set(summary) == {
        "workflowId", "status", "stepCount", "stepsByStatus", "percent", "error",
        "createdAt", "updatedAt", "completedAt",
    }  # fmt: skip
    cancelled = client.get("/api/admin/workflows", params={"status": "cancelled"}).json()
    assert [w["workflowId"] for w in cancelled["workflows"]] == [made[0]["workflowId"]]
    assert client.get("/api/admin/workflows", params={"status": "nope"}).status_code == 422
    assert client.get("/api/admin/workflows", params={"pageSize": 501}).status_code == 422


def test_cancel_and_retry_answer_the_workflow_or_409_and_404(
    api: tuple[httpx.Client, Engine],
) -> None:
    client, _engine = api
    workflow = client.post("/api/workflows", json={"chain": [echo(1), echo(2)]}).json()
    wid = workflow["workflowId"]

    retried = client.post(f"/api/admin/workflows/{wid}/retry")
    assert retried.status_code == 409, retried.text
    assert retried.json()["error"] == "invalid_transition"

    cancelled = client.post(f"/api/admin/workflows/{wid}/cancel")
    assert cancelled.status_code == 200
    assert cancelled.json()["status"] == "cancelled"
    assert cancelled.json()["stepsByStatus"]["cancelled"] == 2
    assert client.post(f"/api/admin/workflows/{wid}/cancel").status_code == 409

    again = client.post(f"/api/admin/workflows/{wid}/retry")
    assert again.status_code == 200
    assert again.json()["status"] == "running"
    assert [s["status"] for s in again.json()["steps"]] == ["pending", "pending"]

    for method, path in [
        ("GET", "/api/admin/workflows/missing"),
        ("POST", "/api/admin/workflows/missing/cancel"),
        ("POST", "/api/admin/workflows/missing/retry"),
    ]:
        answer = client.request(method, path)
        assert answer.status_code == 404
        assert answer.json()["error"] == "workflow_not_found"


def test_a_steps_own_retry_is_refused_and_names_the_workflows(
    api: tuple[httpx.Client, Engine],
) -> None:
    client, engine = api
    workflow = client.post("/api/workflows", json={"chain": [echo(1)]}).json()
    step = workflow["steps"][0]["taskId"]
    fail_step(engine, step)

    answer = client.post(f"/api/admin/tasks/{step}/retry")
    assert answer.status_code == 409
    assert answer.json()["error"] == "invalid_transition"
    assert f"/api/admin/workflows/{workflow['workflowId']}/retry" in answer.json()["message"]
    assert client.get(f"/api/admin/tasks/{step}").json()["status"] == "failed"


def test_a_task_takes_callbacks_and_says_it_has_no_workflow(
    api: tuple[httpx.Client, Engine],
) -> None:
    client, engine = api
    body = {
        "type": "demo.echo",
        "onSuccess": {"type": "demo.echo", "params": {"tag": "done"}, "priority": 3},
        "onFailure": {"type": "demo.echo"},
    }
    task = client.post("/api/tasks", json=body)
    assert task.status_code == 201, task.text
    assert task.json()["workflowId"] is None
    with engine.connect() as conn:
        kept = conn.execute(select(Task.callbacks).where(Task.id == task.json()["taskId"])).scalar()
    assert kept["onSuccess"]["params"] == {"tag": "done"}
    assert kept["onSuccess"]["priority"] == 3
    assert kept["onFailure"]["type"] == "demo.echo"

    batch = client.post("/api/tasks/batch", json={"tasks": [body, {"type": "demo.noop"}]})
    assert batch.status_code == 201, batch.text

    for bad, where in [
        ({**body, "onSuccess": {"type": "nope"}}, "onSuccess"),
        ({**body, "onSuccess": {"type": "demo.noop"}}, "onSuccess"),  # takes no task_id
        ({**body, "onFailure": {"type": "demo.echo", "params": {"error": 1}}}, "onFailure"),
        ({**body, "onFailure": {"type": "demo.echo", "onSuccess": {}}}, "onFailure"),
    ]:
        answer = client.post("/api/tasks", json=bad)
        assert answer.status_code == 422, bad
        assert where in answer.json()["message"]


def test_the_document_describes_workflows_steps_and_callbacks(
    api_on: Callable[[str], tuple[httpx.Client, Engine]], sqlite_url: str
) -> None:
    client, _engine = api_on(sqlite_url)
    spec = client.get("/openapi.json").json()
    schemas = spec["components"]["schemas"]
    body = spec["paths"]["/api/workflows"]["post"]["requestBody"]["content"]["application/json"]
    assert body["schema"]["$ref"] == "#/components/schemas/SubmitWorkflow"
    assert [kind["required"] for kind in schemas["SubmitWorkflow"]["oneOf"]] == [
        ["chain"],
        ["group"],
    ]
    # A step per job type; only a job that takes `result` may take one
    steps = {variant["title"]: variant for variant in schemas["SubmitStep"]["oneOf"]}
    assert steps["demo.sleep"]["properties"]["pipeResult"]["const"] is False
    assert steps["demo.echo"]["properties"]["pipeResult"]["type"] == "boolean"
    # A callback only of a job that takes the params jobplane adds (demo.echo: **params)
    callbacks = schemas["SuccessCallback"]["oneOf"]
    assert "demo.echo" in {variant["title"] for variant in callbacks}
    assert "demo.sleep" not in {variant["title"] for variant in callbacks}
    echo = next(variant for variant in callbacks if variant["title"] == "demo.echo")
    assert echo["properties"]["params"]["propertyNames"] == {"not": {"enum": ["task_id", "result"]}}
    # And the workflow routes link to each other
    submit = spec["paths"]["/api/workflows"]["post"]
    links = submit["responses"]["201"]["links"]
    assert set(links) == {"GetWorkflow", "CancelWorkflow", "RetryWorkflow"}
    assert set(submit["responses"]["200"]["links"]) == set(links)  # the same key again
    # And the submission takes an Idempotency-Key, narrowed as a task's is
    (key,) = [p for p in submit["parameters"] if p["name"] == "idempotency-key"]
    assert key["in"] == "header"
    assert "pattern" in json.dumps(key["schema"])
    assert "maxLength" in json.dumps(key["schema"])
    assert {"200", "409", "422"} <= set(submit["responses"])


def workflow_rows(engine: Engine) -> list[str]:
    with engine.connect() as conn:
        return list(conn.execute(select(Workflow.id)).scalars())


def test_the_same_idempotency_key_and_workflow_answers_200_with_the_first_one(
    api: tuple[httpx.Client, Engine],
) -> None:
    client, engine = api
    # Given a workflow submitted with a key
    key = {"Idempotency-Key": "nightly-2026-12-01"}
    first = client.post("/api/workflows", json=CHAIN_WITH_GROUP, headers=key)
    assert first.status_code == 201, first.text

    # When the client sends it again (it timed out before the answer came)
    again = client.post("/api/workflows", json=CHAIN_WITH_GROUP, headers=key)

    # Then the first workflow answers, and only it was written
    assert again.status_code == 200, again.text
    assert again.json() == first.json()
    assert workflow_rows(engine) == [first.json()["workflowId"]]
    assert row_counts(engine) == {"tasks": 4, "outbox": 1, "task_logs": 0}


def test_the_same_idempotency_key_with_another_workflow_is_a_409_writing_nothing(
    api: tuple[httpx.Client, Engine],
) -> None:
    client, engine = api
    key = {"Idempotency-Key": "k"}
    first = client.post("/api/workflows", json={"chain": [echo(1), echo(2)]}, headers=key)
    before = row_counts(engine)
    for other in (
        {"chain": [echo(1), echo(3)]},  # another step's params
        {"group": [echo(1), echo(2)]},  # the same steps, another shape
        {"chain": [echo(1), {**echo(2), "pipeResult": True}]},
    ):
        conflict = client.post("/api/workflows", json=other, headers=key)
        assert conflict.status_code == 409, conflict.text
        assert conflict.json()["error"] == "idempotency_conflict"
        assert conflict.json()["workflowId"] == first.json()["workflowId"]
        assert first.json()["workflowId"] in conflict.json()["message"]
    assert row_counts(engine) == before
    assert workflow_rows(engine) == [first.json()["workflowId"]]
    # A task's key is its own: the same key on a task is no conflict with a workflow
    assert client.post("/api/tasks", json=echo(1), headers=key).status_code == 201


@pytest.mark.parametrize(
    "header",
    [
        pytest.param("Idempotency-Key:", id="empty"),
        pytest.param("Idempotency-Key: \t ", id="whitespace"),
        pytest.param("Idempotency-Key: " + "k" * 201, id="too-long"),
    ],
)
def test_a_bad_idempotency_key_is_a_422_and_writes_no_workflow(
    api: tuple[httpx.Client, Engine], header: str
) -> None:
    client, engine = api
    response = raw_post(client, "/api/workflows", {"chain": [echo(1)]}, header)
    assert response.status_code == 422, response.text
    assert response.json()["error"] == "invalid_request"
    assert "idempotency-key" in response.json()["message"].lower()
    assert workflow_rows(engine) == []
    assert row_counts(engine)["tasks"] == 0
    longest = {"Idempotency-Key": "k" * 200}
    assert client.post("/api/workflows", json={"chain": [echo(1)]}, headers=longest).is_success
