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


def workflows(session: Session) -> None:
    flow = jobplane.chain(add.s(1), add.s(a=2).set(pipe_result=True))
    assert_type(flow, jobplane.Chain)
    assert_type(
        jobplane.group(add.s(a=n) for n in range(3)).then(add.s(a=0)),
        jobplane.Group | jobplane.Chain,
    )
    assert_type(jobplane.enqueue(session, flow), jobplane.WorkflowHandle)
    assert_type(jobplane.enqueue(session, add, {"a": 1}), str)
    assert_type(flow.delay(), jobplane.WorkflowHandle)
    add.s(a="one")  # type: ignore[arg-type]
