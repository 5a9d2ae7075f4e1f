"""The one rule for what jobplane stores as JSON: where a value fails it, and why."""

from __future__ import annotations

import datetime
from typing import Any

import pytest

from jobplane import stored_json


def lists(levels: int) -> Any:
    value: Any = 1
    for _ in range(levels):
        value = [value]
    return value


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"a": {"b": [0, 1, 2, lists(30)]}}, "p.a.b[3]" + "[0]" * 29 + ": nested deeper than 32"),
        ({"a b": {"c": float("nan")}}, 'p["a b"].c: NaN is not a JSON number'),
        ({"x" * 50: 1, "y": {"": float("-inf")}}, 'p.y[""]: -Infinity is not a JSON number'),
        ({"k": ["ok", "a\x00b"]}, "p.k[1]: a string holds a NUL character"),
        ({"k\x00": 1}, 'p: the key "k\\u0000" holds a NUL character'),
        ({"k": "\udc80"}, "p.k: a string holds a lone surrogate ('\\udc80')"),
        ({"when": datetime.date(2025, 1, 1)}, "p.when: a value of type date is not JSON"),
        ({(1, 2): 1}, "p: a key of type tuple is not JSON"),
    ],
)
def test_a_value_that_would_not_read_back_is_refused_naming_where(value: Any, message: str) -> None:
    with pytest.raises(stored_json.Unstorable) as refused:
        stored_json.encode(value, "p")
    assert str(refused.value).startswith(message)
    assert stored_json.problem(value, "p") == str(refused.value)


def test_nesting_is_checked_without_recursing_into_the_depths() -> None:
    # A value far deeper than Python's recursion limit, and one that contains itself
    looped: list[Any] = []
    looped.append(looped)
    for value in (lists(100_000), looped):
        assert stored_json.problem(value) == "value" + "[0]" * 32 + ": nested deeper than 32 levels"


def test_what_reads_back_is_encoded_as_compact_utf8() -> None:
    value = {"a": lists(31), "t": "é😀", "n": [1.5, -0.0, 2**70, True, None]}
    numbers = "[1.5,-0.0,1180591620717411303424,true,null]"
    expected = '{"a":' + "[" * 31 + "1" + "]" * 31 + ',"t":"é😀","n":' + numbers + "}"
    assert stored_json.encode(value) == expected.encode()
