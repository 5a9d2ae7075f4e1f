"""What mypy --strict makes of a ``Job`` (``make lint`` checks this file; nothing runs it).

A call that must be refused carries ``type: ignore[code]``: strict mode reports an
ignore that is not needed, so each line fails the lint if mypy ever accepts the call.
"""

from __future__ import annotations

from typing import assert_type

from sqlalchemy.orm import Session

import jobplane
from jobplane.library.handles import TaskHandle


@jobplane.job("typing.add")
def add(a: int, b: int = 0) -> int:
    return a + b


def calls(session: Session) -> None:
    assert_type(add(1, b=2), int)
    assert_type(add.enqueue(session, 1, b=2), str)
    assert_type(add.delay(a=1), TaskHandle)
    assert_type(add.apply({"a": 1}, queue="q", delay=5), TaskHandle)
    assert_type(add.new_task(1), jobplane.NewTask)
    assert_type(jobplane.enqueue_many(session, [add.new_task(1)]), list[str])
    add.delay(a="one")  # type: ignore[arg-type]
    add.enqueue(session, c=1)  # type: ignore[call-arg]
    add("1")  # type: ignore[arg-type]
