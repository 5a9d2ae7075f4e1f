"""How large a request body the API reads: the numbers, in one place.

The front door (``jobplane.api.front_door``) enforces them before the app sees a byte:
a ``Content-Length`` over the limit is refused unread, and a body without one is
counted as it arrives.
"""

from __future__ import annotations

KiB = 1024
MiB = 1024 * KiB

#: Largest body of any request, in bytes. A submission's params are at most 64 KiB
#: once encoded (``jobplane.service.MAX_PARAMS_BYTES``); the rest is room for JSON
#: escapes, which may take six bytes per character, and for the other fields.
MAX_BODY = 1 * MiB
#: Largest body of ``POST /api/tasks/batch``, in bytes: 1,000 submissions (the most a
#: batch takes) of 16 KiB on average. Parsing JSON takes a few times a body's size in
#: memory, so this bounds what one batch costs the API; larger params go in several
#: batches.
MAX_BATCH_BODY = 16 * MiB

#: The routes whose limit is not ``MAX_BODY``, by (method, path).
BODY_LIMITS: dict[tuple[str, str], int] = {("POST", "/api/tasks/batch"): MAX_BATCH_BODY}


def body_limit(method: str, path: str) -> int:
    """The largest body, in bytes, that ``method`` on ``path`` may send."""
    return BODY_LIMITS.get((method, path), MAX_BODY)


def in_words(size: int) -> str:
    """``size`` bytes as a person reads it: ``1 MiB``, ``64 KiB``, ``300 bytes``."""
    for unit, name in ((MiB, "MiB"), (KiB, "KiB")):
        if size >= unit and size % unit == 0:
            return f"{size // unit} {name}"
    return f"{size} bytes"
