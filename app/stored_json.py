"""What jobplane can store as JSON: a task's params and its result alike.

Both are kept as JSON, in PostgreSQL's ``jsonb`` or SQLite's text, and must read back
as they were written: NaN and ±Infinity are not JSON (SQLite would give them back as
null, ``jsonb`` refuses them), a NUL character has no place in ``jsonb`` text, a lone
surrogate cannot be encoded as UTF-8, and a value nested deeper than ``MAX_DEPTH``
levels would be stored but could not be answered again (the API's serializer stops
far sooner than the database does). A value the database refused would fail the
statement it is in, and with it the caller's transaction; so every value is checked
before it is written, and the refusal names where in the value the problem is.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

#: Deepest nesting of objects and lists accepted: the value itself is level 1.
MAX_DEPTH = 32
#: Characters of a key shown in a path before it is cut short.
_KEY_SHOWN = 40
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_SURROGATE = re.compile("[\ud800-\udfff]")


class Unstorable(ValueError):
    """A value that cannot be stored as JSON and read back as it was; the message
    names where, as ``params.a.b[3]: nested deeper than 32 levels``."""


def encode(value: Any, name: str = "value") -> bytes:
    """``value`` as JSON in UTF-8, or ``Unstorable`` saying where and why it cannot be
    stored; ``name`` starts the path in the message (``params``, ``result``)."""
    check(value, name)
    try:
        text = json.dumps(value, separators=(",", ":"), allow_nan=False, ensure_ascii=False)
    except (TypeError, ValueError) as error:  # an integer too long to write out, say
        raise Unstorable(f"{name}: {error}") from None
    return text.encode("utf-8")


def problem(value: Any, name: str = "value") -> str | None:
    """Why ``value`` cannot be stored as JSON, or None when it can."""
    try:
        encode(value, name)
    except Unstorable as error:
        return str(error)
    return None


def check(value: Any, name: str = "value") -> None:
    """``Unstorable`` for the first part of ``value`` that would not read back as it is.

    Recursion is bounded: nothing is looked into below ``MAX_DEPTH`` levels.
    """
    fault = _fault(value, 1)
    if fault is not None:
        members, reason = fault
        raise Unstorable(f"{name}{''.join(reversed(members))}: {reason}")


#: Where a fault is (the members leading to it, innermost first) and what it is.
_Fault = tuple[list[str], str]


def _fault(value: Any, depth: int) -> _Fault | None:
    """The first fault in ``value``, at ``depth`` levels; the path is only built for a
    fault, since values are checked on every submission."""
    if isinstance(value, str):
        trouble = _text_trouble(value)
        return None if trouble is None else ([], f"a string {trouble}")
    if value is None or isinstance(value, bool | int):
        return None
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            shown = "NaN" if math.isnan(value) else f"{'-' if value < 0 else ''}Infinity"
            return [], f"{shown} is not a JSON number"
        return None
    if not isinstance(value, dict | list | tuple):
        return [], f"a value of type {type(value).__name__} is not JSON"
    if depth > MAX_DEPTH:
        return [], f"nested deeper than {MAX_DEPTH} levels"
    if isinstance(value, dict):
        return _members_fault(value, depth)
    for index, item in enumerate(value):
        fault = _fault(item, depth + 1)
        if fault is not None:
            fault[0].append(f"[{index}]")
            return fault
    return None


def _members_fault(value: dict[Any, Any], depth: int) -> _Fault | None:
    for key, item in value.items():
        if isinstance(key, str):
            trouble = _text_trouble(key)
        elif key is None or isinstance(key, int | float):  # JSON writes them as strings
            trouble = None
        else:
            return [], f"a key of type {type(key).__name__} is not JSON"
        if trouble is not None:
            return [], f"the key {_shown(key)} {trouble}"
        fault = _fault(item, depth + 1)
        if fault is not None:
            fault[0].append(_member(key))
            return fault
    return None


def _text_trouble(text: str) -> str | None:
    """What makes ``text`` unstorable, as the end of a sentence, or None."""
    if "\x00" in text:
        return "holds a NUL character, which cannot be stored"
    surrogate = None if text.isascii() else _SURROGATE.search(text)
    if surrogate is not None:
        return f"holds a lone surrogate ({surrogate.group()!r}), which is not text"
    return None


def _member(key: object) -> str:
    """How the path names the member ``key`` of an object: ``.name`` or ``["a b"]``."""
    text = str(key)
    if _NAME.fullmatch(text) and len(text) <= _KEY_SHOWN:
        return f".{text}"
    return f"[{_shown(text)}]"


def _shown(key: str) -> str:
    """``key`` quoted and escaped (readable whatever it holds), cut short if long."""
    quoted = json.dumps(key[:_KEY_SHOWN])
    return quoted if len(key) <= _KEY_SHOWN else f'{quoted[:-1]}…"'
