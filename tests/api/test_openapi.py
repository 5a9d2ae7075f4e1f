"""The OpenAPI document is complete and true: schemathesis tests every route with it.

Schemathesis runs as ``st run`` would, every phase in turn against the API on
PostgreSQL: the document's examples, then its coverage phase (every parameter at and
beyond its bounds, each wrong type), then fuzzing, then the stateful phase, which
chains requests through the document's links (submit → read → logs → cancel → retry,
the schedule list → run one). Every default check is on, those of the stateful phase
too (``use_after_free``, ``ensure_resource_availability``): an answer is never a 5xx,
its status, content type, headers and body are the ones documented, a request the
document allows is accepted and one it forbids is refused.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import schemathesis
from schemathesis import engine
from schemathesis.engine import events

from jobplane import registry
from jobplane.settings import Settings

TOKEN = "openapi-test-token-0123"
STREAMING = "/api/admin/events"
SEED = 7
#: Examples per operation and phase: every parameter's edge cases are reached, and the
#: whole run takes one to three minutes on two cores (see the test).
MAX_EXAMPLES = 100
#: Examples of POST /api/workflows per phase (see schemathesis_config).
WORKFLOW_EXAMPLES = 30
#: The phases that test the API, each of which must run and find nothing.
PHASES = ("examples", "coverage", "fuzzing", "stateful")
#: Every route that takes a task id, each of which some followed link must have reached.
TASK_ROUTES = {
    "GET /api/tasks/{task_id}",
    "GET /api/admin/tasks/{task_id}",
    "GET /api/admin/tasks/{task_id}/logs",
    "POST /api/admin/tasks/{task_id}/cancel",
    "POST /api/admin/tasks/{task_id}/retry",
}


def schemathesis_config() -> schemathesis.Config:
    """Every phase, every default check, a fixed seed; three things the test adapts."""
    return schemathesis.Config.from_dict(
        {
            "seed": SEED,
            "headers": {"Authorization": f"Bearer {TOKEN}"},
            "continue-on-failure": True,  # every failure of an operation, not the first
            "generation": {
                "max-examples": MAX_EXAMPLES,
                "deterministic": True,
                "database": "none",
                # Strings a request can carry: no lone surrogate (not encodable as UTF-8)
                # and no NUL, which params refuse where their `{}` schema cannot say so.
                # test_read_back.py sends both, and every other odd value, on purpose.
                "codec": "utf-8",
                "allow-x00": False,
            },
            "phases": {
                "stateful": {
                    "max-steps": 12,
                    # Only the document's own links: a link dropped from it fails this test.
                    "inference": {"algorithms": []},
                }
            },
            "operations": [
                {
                    # A valid `now` depends on the server's clock (the catch-up window), which
                    # no schema can say; test_schedules.py and the coverage phase's refusals
                    # cover it.
                    "include-name": "POST /api/admin/schedules/catch-up",
                    "checks": {"positive_data_acceptance": {"enabled": False}},
                },
                {
                    # No worker runs here: a long poll of a pending task waits all of its
                    # `wait` (up to 60 s). test_task_wait.py covers the long poll.
                    "include-name": "GET /api/tasks/{task_id}",
                    "parameters": {"query.wait": 0.01},
                },
                {
                    # The coverage phase enumerates the bounds of every branch of the
                    # recursive node schema, for minutes; test_workflows.py covers them. And
                    # whether a step may take a result (`pipeResult`) depends on its place
                    # in the tree, which no schema says: a valid body may be refused.
                    "include-name": "POST /api/workflows",
                    "phases": {"coverage": {"enabled": False}},
                    # Each body is a tree of steps: fewer of them say as much.
                    "generation": {
                        "max-examples": WORKFLOW_EXAMPLES,
                        "codec": "utf-8",
                        "allow-x00": False,
                    },
                    "checks": {"positive_data_acceptance": {"enabled": False}},
                },
                {
                    # The stream sends `stats` at once, then every second until `maxSeconds`
                    # (up to an hour): the first event is read and checked, then it is cut.
                    "include-path": STREAMING,
                    "max-stream-events": 1,
                },
            ],
        }
    )


@dataclass
class Run:
    """What a schemathesis run found: each phase's outcome, every problem, the links used."""

    phases: dict[str, str] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    #: (source, target) of each link the stateful phase followed.
    links_followed: set[tuple[str, str]] = field(default_factory=set)

    def record(self, event: events.EngineEvent) -> None:
        if isinstance(event, events.PhaseFinished):
            self.phases[event.phase.name.value] = event.status.value
        elif isinstance(event, events.ScenarioFinished):
            self.problems.extend(_failures(event))
            if event.phase.value == "stateful":
                self.links_followed |= {
                    _source_and_target(node.transition.id)
                    for node in event.recorder.cases.values()
                    if node.transition is not None and node.is_transition_applied
                }
        elif isinstance(event, events.NonFatalError):
            self.problems.append(f"{event.label}: {event.info.format()}")
        elif isinstance(event, events.FatalError):
            self.problems.append(f"fatal: {event.exception!r}")


def _source_and_target(transition: str) -> tuple[str, str]:
    """``("POST /api/tasks", "GET /api/tasks/{task_id}")`` of schemathesis's
    ``POST /api/tasks -> [201] GetTask -> GET /api/tasks/{task_id}``."""
    source, _link, target = transition.split(" -> ")
    return source, target


def _failures(event: events.ScenarioFinished) -> Iterator[str]:
    """Each distinct failure of a scenario, with the request that shows it."""
    seen = set()
    for case_id, checks in event.recorder.checks.items():
        for check in checks:
            info = check.failure_info
            if info is None or (check.name, info.failure.message) in seen:
                continue
            seen.add((check.name, info.failure.message))
            operation = event.recorder.cases[case_id].value.operation.label
            yield (
                f"[{event.phase.value}] {operation}: {check.name}: {info.failure.title}\n"
                f"{info.failure.message}\n{info.code_sample}"
            )


#: The submission options that are integers.
INTEGER_OPTIONS = ("priority", "maxRetries", "timeoutSeconds")


def integers_as_written(context: schemathesis.HookContext, body: Any) -> Any:
    """A generated body with its whole floats in integer options written as integers.

    JSON Schema counts ``2.0`` as an integer and schemathesis sends it so, but the API
    takes an integer only as written without a fraction (``2.0`` is a 422 naming the
    field: test_strict_fields.py), which a schema cannot say. Options are fixed
    wherever they are: in a submission, its callbacks, a batch, a workflow's steps;
    never inside params.
    """
    if isinstance(body, list):
        for item in body:
            integers_as_written(context, item)
    elif isinstance(body, dict):
        for name, value in body.items():
            if name in INTEGER_OPTIONS and isinstance(value, float) and value.is_integer():
                body[name] = int(value)
            elif name != "params":
                integers_as_written(context, value)
    return body


def run_schemathesis(url: str) -> Run:
    schema = schemathesis.openapi.from_url(f"{url}/openapi.json", config=schemathesis_config())
    schema.hook("map_body")(integers_as_written)
    run = Run()
    for event in engine.from_schema(schema).execute():
        run.record(event)
    return run


# Its run grows with the job types the process registered (a submission, a callback and
# a workflow's step are described per type): with the suite's test job modules, two to
# three minutes on two cores, past the default limit.
@pytest.mark.timeout(480)
def test_schemathesis_finds_nothing_wrong_in_any_phase(
    pg_url: str, api_factory: Callable[..., httpx.Client]
) -> None:
    # Given the API with a token, on PostgreSQL, over real HTTP
    client = api_factory(Settings(database_url=pg_url, api_token=TOKEN))
    # When schemathesis runs every phase against it
    run = run_schemathesis(str(client.base_url).rstrip("/"))
    # Then nothing is wrong, and every phase ran
    assert not run.problems, "\n\n".join(run.problems)
    assert {phase: run.phases.get(phase) for phase in PHASES} == dict.fromkeys(PHASES, "success")
    # And the stateful one followed links from submissions, reaching every task route
    sources = {source for source, _target in run.links_followed}
    targets = {target for _source, target in run.links_followed}
    assert "POST /api/tasks" in sources, run.links_followed
    assert TASK_ROUTES <= targets, TASK_ROUTES - targets


def test_the_document_links_an_answer_to_what_can_be_done_with_its_task(
    api_factory: Callable[..., httpx.Client], pg_settings: Settings
) -> None:
    spec = api_factory(pg_settings).get("/openapi.json").json()
    paths = spec["paths"]
    created = paths["/api/tasks"]["post"]["responses"]["201"]["links"]
    assert set(created) == {"GetTask", "GetTaskDetail", "GetTaskLogs", "CancelTask", "RetryTask"}
    cancel = created["CancelTask"]
    target = paths["/api/admin/tasks/{task_id}/cancel"]["post"]["operationId"]
    assert cancel == {
        "operationId": target,
        "parameters": {"path.task_id": "$response.body#/taskId"},
        "description": "cancel the task",
    }
    batch = paths["/api/tasks/batch"]["post"]["responses"]["201"]["links"]["GetTask"]
    assert batch["parameters"] == {"path.task_id": "$response.body#/taskIds/0"}
    schedules = paths["/api/admin/schedules"]["get"]["responses"]["200"]["links"]
    first_name = "$response.body#/schedules/0/name"
    assert schedules["RunSchedule"]["parameters"] == {"path.name": first_name}


def test_the_document_says_which_submissions_are_accepted(
    api_factory: Callable[..., httpx.Client], pg_settings: Settings
) -> None:
    spec = api_factory(pg_settings).get("/openapi.json").json()
    variants = {v["title"]: v for v in spec["components"]["schemas"]["SubmitTask"]["oneOf"]}
    # One variant per registered job type (the registry is the process's: other test
    # modules' jobs are in it too), with the params its signature takes
    assert set(variants) == set(registry.known_types())
    assert {"demo.echo", "demo.fail", "demo.noop", "demo.sleep"} <= set(variants)
    sleep = variants["demo.sleep"]["properties"]
    assert sleep["type"]["const"] == "demo.sleep"
    assert sleep["params"]["properties"] == {"seconds": {"default": 1.0}, "steps": {"default": 1}}
    assert sleep["params"]["additionalProperties"] is False
    assert variants["demo.echo"]["properties"]["params"]["additionalProperties"] is True
    assert variants["demo.sleep"]["examples"] == [
        {"type": "demo.sleep", "params": {"seconds": 1.0, "steps": 1}}
    ]
    queue = sleep["queue"]["anyOf"][0]["pattern"]
    assert queue.startswith("^$|")  # empty: the job's own queue


def test_a_real_event_stream_is_what_the_document_says(
    api_factory: Callable[..., httpx.Client], pg_settings: Settings
) -> None:
    # Given a task, so that the stream's first look sends `tasks` as well as `stats`
    client = api_factory(pg_settings)
    assert client.post("/api/tasks", json={"type": "demo.noop"}).status_code == 201
    # When the stream is read until it ends, after that one look
    stream = client.get(STREAMING, params={"maxSeconds": 0.01})
    # Then it holds both events, and each is as the document describes it
    assert "event: stats" in stream.text and "event: tasks" in stream.text, stream.text
    schema = schemathesis.openapi.from_url(str(client.base_url.join("/openapi.json")))
    schema[STREAMING]["GET"].validate_response(stream)
    described = schema.raw_schema["paths"][STREAMING]["get"]["responses"]["200"]["content"]
    events_schema = described["text/event-stream"]["itemSchema"]["oneOf"]
    names = {event["properties"]["event"]["const"] for event in events_schema}
    assert names == {"stats", "tasks", "error"}


def admin_routes(spec: dict[str, Any]) -> list[tuple[str, str]]:
    return [
        (method.upper(), path)
        for path, operations in spec["paths"].items()
        for method in operations
        if path.startswith("/api/")
    ]


def test_without_a_token_every_api_route_answers_401(
    api_factory: Callable[..., httpx.Client], pg_settings: Settings
) -> None:
    # Given an API with a token, and the routes its own document lists
    client = api_factory(pg_settings.model_copy(update={"api_token": TOKEN}))
    routes = admin_routes(client.get("/openapi.json").json())
    assert ("GET", "/api/admin/stats") in routes
    assert ("GET", STREAMING) in routes
    assert len(routes) >= 10
    # When each is called without a token, or with a wrong one, then: 401 and a message
    for method, path in routes:
        url = path.replace("{task_id}", "some-id").replace("{name}", "some-name")
        for headers in ({}, {"Authorization": "Bearer wrong"}):
            answer = client.request(method, url, headers=headers)
            assert answer.status_code == 401, (method, path, answer.text)
            assert answer.json()["error"] == "unauthorized"
            assert answer.headers["WWW-Authenticate"] == "Bearer"


def test_the_document_describes_the_token_and_the_error_bodies(
    api_factory: Callable[..., httpx.Client], pg_settings: Settings
) -> None:
    spec = api_factory(pg_settings).get("/openapi.json").json()
    assert spec["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    assert "HTTPValidationError" not in spec["components"]["schemas"]
    submit = spec["paths"]["/api/tasks"]["post"]
    assert submit["security"] == [{"bearer": []}]
    problem = {"$ref": "#/components/schemas/Problem"}
    for status in ("401", "403", "422", "503"):
        assert submit["responses"][status]["content"]["application/json"]["schema"] == problem
    assert "403" not in spec["paths"]["/api/admin/stats"]["get"]["responses"]
    assert "security" not in spec["paths"]["/healthz"]["get"]
