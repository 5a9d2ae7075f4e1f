"""What the API accepts reads back as it was sent, on PostgreSQL and SQLite alike.

Hypothesis sends submissions from the whole input space of ``POST /api/tasks`` and
``POST /api/tasks/batch``: params of any JSON (deep nesting, any unicode including
lone surrogates and NUL, huge and tiny numbers, -0.0, NaN and ±Infinity as the
non-standard literals ``NaN``/``Infinity``), every option of every JSON type, and
Idempotency-Key headers. Whatever the answer, it is never a 5xx; a 201's task reads back
equal to what was sent, through ``GET /api/tasks/{id}`` and ``GET /api/admin/tasks/{id}``;
a 4xx is a JSON error and stores nothing.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

import httpx
from hypothesis import HealthCheck, Phase, example, given, seed, settings
from hypothesis import strategies as st
from sqlalchemy import Engine

from jobplane.registry import get_job
from jobplane.settings import Settings
from tests.conftest import row_counts

#: Enough for every kind of value to turn up on each database, in seconds.
MAX_EXAMPLES = 300
SEED = 13

DEEP = 300  #: the nesting the issue saw stored and then unreadable
SURROGATE = "\ud800"

# -- what is sent --------------------------------------------------------------------

#: Strings of any character that UTF-8 can carry, and ones with a character it cannot
#: (a lone surrogate) or that has no place in stored JSON (NUL).
clean_texts = st.text(st.characters(codec="utf-8"), max_size=8)
bad_texts = st.builds(
    lambda head, bad, tail: head + bad + tail,
    clean_texts,
    st.sampled_from(["\x00", SURROGATE, "\udfff"]),
    clean_texts,
)
finite_numbers = st.one_of(
    st.integers(),
    st.integers(min_value=-(10**40), max_value=10**40),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([-0.0, 1e308, -1e308, 5e-324, 2.2250738585072014e-308, 2**53 + 1]),
)
#: NaN and ±Infinity: sent as the literals NaN, Infinity and -Infinity.
not_numbers = st.sampled_from([math.nan, math.inf, -math.inf])


def json_of(scalars: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.recursive(
        scalars,
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(clean_texts, inner, max_size=3),
        max_leaves=10,
    )


#: JSON that can be stored as it is, and JSON with a value that cannot somewhere.
storable = json_of(st.none() | st.booleans() | finite_numbers | clean_texts)
json_values = json_of(
    st.none() | st.booleans() | finite_numbers | not_numbers | clean_texts | bad_texts
)
#: A value of every JSON type, as a client might send one where a number or name goes.
any_type = st.one_of(
    st.none(),
    st.booleans(),
    finite_numbers,
    not_numbers,
    clean_texts,
    st.sampled_from(["1", "2.5", "true", ""]),
    st.lists(storable, max_size=2),
    st.dictionaries(clean_texts, storable, max_size=2),
)


def usually(
    plausible: st.SearchStrategy[Any], other: st.SearchStrategy[Any], one_in: int
) -> st.SearchStrategy[Any]:
    """A value from ``plausible``, but one time in about ``one_in`` from ``other``."""
    plausibly = st.sampled_from([True] * (one_in - 1) + [False])
    return st.tuples(plausibly, plausible, other).map(
        lambda drawn: drawn[1] if drawn[0] else drawn[2]
    )


def nest(value: Any, depth: int, in_lists: bool) -> Any:
    """``value`` inside ``depth`` lists (or objects)."""
    for _ in range(depth):
        value = [value] if in_lists else {"a": value}
    return value


#: Around the deepest nesting accepted (32), and far beyond it.
deep_values = st.builds(nest, storable, st.integers(28, 36) | st.just(DEEP), st.booleans())
params = st.one_of(
    st.dictionaries(clean_texts, storable, max_size=4),
    st.dictionaries(clean_texts, storable, max_size=4),
    st.dictionaries(clean_texts, json_values, max_size=4),
    st.dictionaries(clean_texts | bad_texts, storable, min_size=1, max_size=2),
    st.dictionaries(clean_texts, deep_values, min_size=1, max_size=1),
)


def within(values: st.SearchStrategy[Any], *beyond: Any) -> st.SearchStrategy[Any]:
    """Mostly ``values``, now and then one of ``beyond``."""
    return usually(values, st.sampled_from(beyond), one_in=10)


#: Each option's values: of its type, mostly within its bounds.
OPTIONS: dict[str, st.SearchStrategy[Any]] = {
    # null, and an empty queue, ask for the job's default
    "queue": within(
        st.sampled_from([None, "", "default", "mail.v2", "Q_" + "q" * 98]), "9", "q" * 101
    ),
    "priority": within(st.none() | st.integers(-1000, 1000), -1001, 1001, 10**30),
    "maxRetries": within(st.none() | st.integers(0, 100), -1, 101),
    "timeoutSeconds": within(st.none() | st.integers(1, 7 * 86400), 0, 7 * 86400 + 1),
    "delaySeconds": within(st.floats(0, 366 * 86400) | st.integers(0, 10), -1e-9, 366 * 86400 + 1),
}
#: Mostly a job that takes any params, so that most params are accepted.
JOB_TYPES = st.sampled_from(["demo.echo"] * 4 + ["demo.noop", "demo.sleep"])
#: Values of another type that a lax parser turns into the expected one (true into 1,
#: "30" into 30, 1.0 into 1, a number into a date).
COERCIBLE = st.sampled_from([True, False, 0, 1, 1.0, 30.0, "1", "30", "2.5", "", "true", "null"])
#: The field a submission gets a value of any type in, if any: one at a time, so that
#: each is seen accepted or refused on its own.
ODD_FIELD = st.sampled_from([None] * 10 + ["type", "params", *OPTIONS, "someField"])


@st.composite
def submissions(draw: st.DrawFn) -> dict[str, Any]:
    """A submission: a job type, maybe params and options, maybe one odd field."""
    body: dict[str, Any] = {"type": draw(JOB_TYPES)}
    if draw(st.booleans()):
        body["params"] = draw(params)
    for name, values in OPTIONS.items():
        if draw(st.booleans()):
            body[name] = draw(values)
    odd = draw(ODD_FIELD)
    if odd is not None:
        body[odd] = draw(COERCIBLE | any_type)
    return body


#: Mostly submissions, now and then a body that is no submission at all.
bodies = usually(submissions(), any_type, one_in=10)
#: A few keys, so that they repeat: blank ones (a no-break space is whitespace too; HTTP
#: itself strips the rest), Latin-1, the longest accepted and one longer.
keys = usually(
    st.none(), st.sampled_from(["k1", "k2", "", "\xa0", "a b", "é", "x" * 200, "y" * 201]), 3
)


@dataclass
class Post:
    """One request: a submission (or a batch of them), with its Idempotency-Key."""

    body: Any
    batch: bool = False
    key: str | None = None

    def encoded(self) -> str:
        # ensure_ascii writes a lone surrogate as its \ud800 escape; allow_nan writes NaN.
        body = {"tasks": self.body} if self.batch else self.body
        return json.dumps(body, ensure_ascii=True, allow_nan=True)


posts = usually(
    st.builds(Post, bodies, key=keys),
    st.builds(Post, st.lists(submissions(), min_size=1, max_size=3), batch=st.just(True)),
    one_in=5,
)

# -- what is checked -----------------------------------------------------------------


def same_json(sent: Any, got: Any) -> bool:
    """Whether ``got`` is ``sent`` as JSON: numbers equal as the decimals that were sent
    (1e308 may come back as 10**308, -0.0 as 0), true is not 1, key order does not count."""
    if isinstance(sent, bool) or isinstance(got, bool) or sent is None or got is None:
        return type(sent) is type(got) and sent == got
    if isinstance(sent, int | float) and isinstance(got, int | float):
        return math.isfinite(sent) and _decimal(sent) == _decimal(got)
    if isinstance(sent, str) or isinstance(got, str):
        return type(sent) is type(got) and sent == got
    if isinstance(sent, list) and isinstance(got, list):
        return len(sent) == len(got) and all(map(same_json, sent, got))
    if isinstance(sent, dict) and isinstance(got, dict):
        return sent.keys() == got.keys() and all(same_json(sent[k], got[k]) for k in sent)
    return False


def _decimal(number: float) -> Decimal:
    return Decimal(repr(number)) if isinstance(number, float) else Decimal(number)


@dataclass
class Ledger:
    """What the API promised so far: each key's first request and its task."""

    settings: Settings
    keys: dict[str, tuple[str, str]] = field(default_factory=dict)
    #: How many answers had each status: a property that refused everything proves nothing.
    statuses: Counter[int] = field(default_factory=Counter)

    def check_task(self, sent: dict[str, Any], task: dict[str, Any]) -> None:
        """A task a 201 answered: as it was sent, the options not sent at the job's defaults
        (null, and an empty queue, ask for the default)."""
        spec = get_job(sent["type"])
        defaults = {
            "queue": spec.queue,
            "priority": spec.priority,
            "maxRetries": _pick(spec.max_retries, self.settings.default_max_retries),
            "timeoutSeconds": _pick(spec.timeout, self.settings.default_timeout),
        }
        assert same_json(sent["type"], task["taskType"]), (sent, task)
        assert same_json(sent.get("params", {}), task["params"]), (sent, task)
        for name, default in defaults.items():
            value = sent.get(name)
            asks_default = value is None or (name == "queue" and value == "")
            expected = default if asks_default else value
            assert same_json(expected, task[name]), f"{name}: sent {value!r}, read {task[name]!r}"
        delay = sent.get("delaySeconds", 0)
        assert isinstance(delay, int | float) and not isinstance(delay, bool), f"delay {delay!r}"
        waited = _instant(task["runAfter"]) - _instant(task["createdAt"])
        assert abs(waited.total_seconds() - delay) < 1e-3, (delay, task)


def _pick(*choices: int | None) -> int:
    return next(choice for choice in choices if choice is not None)


def _instant(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def read_back(client: httpx.Client, task_id: str, context: str) -> dict[str, Any]:
    """The task as the submitter reads it, which is exactly as an admin reads it."""
    mine, admin = (client.get(path.format(task_id)) for path in READS)
    statuses = (mine.status_code, admin.status_code)
    assert statuses == (200, 200), f"read back: {statuses} {mine.text[:200]}; {context}"
    assert same_json(mine.json(), admin.json()), (mine.json(), admin.json())
    task: dict[str, Any] = mine.json()
    return task


READS = ("/api/tasks/{}", "/api/admin/tasks/{}")


def check_post(client: httpx.Client, engine: Engine, ledger: Ledger, post: Post) -> None:
    """Send ``post``; its answer keeps every promise, and so does what is stored."""
    text = post.encoded()
    headers = {"Content-Type": b"application/json"}
    if post.key is not None:
        headers["Idempotency-Key"] = post.key.encode("latin-1")  # as a header carries it
    before = row_counts(engine)
    response = client.post(
        "/api/tasks/batch" if post.batch else "/api/tasks", content=text.encode(), headers=headers
    )
    after = row_counts(engine)
    added = {name: after[name] - before[name] for name in after}
    status = response.status_code
    ledger.statuses[status] += 1
    context = f"sent {text[:600]!r} (key {post.key!r}): {status} {response.text[:600]}"
    earlier = ledger.keys.get(post.key) if post.key is not None else None
    assert status < 500, context
    if status >= 400:
        # Then a JSON error a person can act on, and nothing stored
        assert {"error", "message"} <= response.json().keys(), context
        assert added == tasks_and_outbox(0), context
        assert earlier is None or earlier[0] != text, f"the same request again: {context}"
    elif post.batch:
        assert (status, added) == (201, tasks_and_outbox(len(post.body))), context
        for sent, task_id in zip(post.body, response.json()["taskIds"], strict=True):
            ledger.check_task(sent, read_back(client, task_id, context))
    else:
        answer = response.json()
        if earlier is None:
            assert (status, added) == (201, tasks_and_outbox(1)), context
            if post.key is not None:
                ledger.keys[post.key] = (text, answer["taskId"])
        else:  # the same key for the same submission: its task again, nothing new
            again = (200, tasks_and_outbox(0), earlier[1])
            assert (status, added, answer["taskId"]) == again, context
        ledger.check_task(post.body, answer)
        assert same_json(answer, read_back(client, answer["taskId"], context)), context


def tasks_and_outbox(count: int) -> dict[str, int]:
    """Rows added by ``count`` new tasks: the task and its outbox row each, no log line."""
    return {"tasks": count, "outbox": count, "task_logs": 0}


EXAMPLES = [
    Post({"type": "demo.echo", "params": {"deep": nest(0, DEEP, in_lists=True)}}),
    Post({"type": "demo.echo", "params": {"deep": nest("x", DEEP, in_lists=False)}}),
    Post({"type": "demo.echo", "params": {"surrogate": SURROGATE}}),
    Post({"type": "demo.echo", "params": {SURROGATE: 1}}),
    Post({"type": "demo.echo", "params": {"nul": "a\x00b"}}),
    Post({"type": "demo.echo", "params": {"nan": math.nan, "inf": [math.inf, -math.inf]}}),
    Post({"type": "demo.echo", "params": {"big": 1e308, "zero": -0.0, "int": 10**40}}),
    Post({"type": "demo.echo", "priority": True}),
    Post({"type": "demo.echo", "maxRetries": 1.0, "timeoutSeconds": "30"}),
    Post({"type": "demo.echo", "params": {"a": 1}}, key="k1"),
    Post({"type": "demo.echo", "params": {"a": 2}}, key="k1"),
    Post([{"type": "demo.echo", "params": {"nan": math.nan}}], batch=True),
]


def run_property(client: httpx.Client, engine: Engine, ledger: Ledger) -> None:
    @seed(SEED)  # the same examples on every run
    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        database=None,
        # No shrinking: each example changes the database, so a replay is another test.
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(post=posts)
    def property_holds(post: Post) -> None:
        check_post(client, engine, ledger, post)

    for explicit in reversed(EXAMPLES):
        property_holds = example(post=explicit)(property_holds)
    property_holds()
    # And the examples were both accepted and refused, many times each
    accepted = ledger.statuses[201]
    refused = sum(count for status, count in ledger.statuses.items() if status >= 400)
    sent = ledger.statuses.total()
    assert accepted > sent / 4 and refused > sent / 4, ledger.statuses


def test_what_the_api_accepts_reads_back_as_it_was_sent(
    any_url: str, any_engine: Engine, api_factory: Callable[..., httpx.Client]
) -> None:
    # Given the API on a fresh database (PostgreSQL, then SQLite)
    app_settings = Settings(database_url=any_url)
    url = api_factory(app_settings).base_url
    # A connection per request: uvicorn closes one after a 500, which must not fail the
    # next example instead.
    no_reuse = httpx.Limits(max_keepalive_connections=0)
    with httpx.Client(base_url=url, limits=no_reuse, timeout=30) as client:
        # When hypothesis submits whatever it likes, then every answer keeps the promise
        run_property(client, any_engine, Ledger(app_settings))
