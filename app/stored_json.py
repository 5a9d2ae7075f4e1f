"""What jobplane can store as JSON: a task's params and its result alike.

Both are kept as JSON, in PostgreSQL's ``jsonb`` or SQLite's text, and must read back
as they were written: NaN and ±Infinity are not JSON (SQLite would give them back as
null, ``jsonb`` refuses them), a NUL character has no place in ``jsonb`` text, and a
lone surrogate cannot be encoded as UTF-8. A value the database refused would fail the
statement it is in, and with it the caller's transaction.
"""

from __future__ import annotations

import json
import re
from typing import Any

#: JSON's escape of a NUL character (not preceded by an escaped backslash).
_JSON_NUL = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")


def encode(value: Any) -> bytes:
    """``value`` as JSON in UTF-8, or ``ValueError`` saying why it cannot be stored
    (``TypeError`` for a value that is not JSON at all)."""
    try:
        text = json.dumps(value, separators=(",", ":"), allow_nan=False, ensure_ascii=False)
        encoded = text.encode("utf-8")  # a lone surrogate: UnicodeEncodeError, a ValueError
    except RecursionError:
        raise ValueError("it is nested too deeply") from None
    if _JSON_NUL.search(text):
        raise ValueError("it contains a NUL character")
    return encoded


def problem(value: Any) -> str | None:
    """Why ``value`` cannot be stored as JSON, or None when it can."""
    try:
        encode(value)
    except (TypeError, ValueError) as error:
        return str(error)
    return None
