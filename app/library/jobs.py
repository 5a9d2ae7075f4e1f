"""``Job``: what ``@job`` returns. Callable as the function itself; ``.enqueue``,
``.delay`` and ``.apply`` submit it."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Mapping
from datetime import timedelta
from typing import Any, Generic, ParamSpec, TypeVar

from sqlalchemy import Connection
from sqlalchemy.orm import Session

from jobplane.domain import InvalidParams
from jobplane.library.engine import default_engine
from jobplane.library.enqueue import NewTask, enqueue
from jobplane.library.handles import TaskHandle
from jobplane.library.workflows import Step
from jobplane.registry import JobSpec
from jobplane.service import Submission

P = ParamSpec("P")
R = TypeVar("R", covariant=True)


class Job(Generic[P, R]):
    """A job type, as ``@job`` declares it.

    Calling it runs the function itself, in this thread (for unit tests); ``.enqueue``
    adds a task to the caller's transaction, ``.delay`` and ``.apply`` submit one in a
    transaction of their own. Params are the function's arguments: mypy checks them
    against its signature; jobplane checks them again before writing anything.
    """

    def __init__(self, spec: JobSpec) -> None:
        self.spec = spec
        functools.update_wrapper(self, spec.fn)

    @property
    def name(self) -> str:
        """The job type's name: what a task's ``type`` is."""
        return self.spec.name

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        result: R = self.spec.fn(*args, **kwargs)
        return result

    def __repr__(self) -> str:
        return f"<Job {self.name!r} of {self.spec.fn.__module__}.{self.spec.fn.__qualname__}>"

    def enqueue(self, db: Session | Connection, /, *args: P.args, **kwargs: P.kwargs) -> str:
        """Add a task of this job to ``db``'s open transaction (``jobplane.enqueue``);
        its id. Commits nothing."""
        return enqueue(db, self, self.params(*args, **kwargs))

    def delay(self, *args: P.args, **kwargs: P.kwargs) -> TaskHandle:
        """Submit a task of this job now, in a short transaction of its own (on
        ``JOBPLANE_DATABASE_URL``); a handle to it."""
        return self.apply(self.params(*args, **kwargs))

    def apply(
        self,
        params: Mapping[str, Any] | None = None,
        *,
        queue: str | None = None,
        priority: int | None = None,
        delay: float | timedelta | None = None,
        max_retries: int | None = None,
        timeout: int | None = None,
        idempotency_key: str | None = None,
    ) -> TaskHandle:
        """``delay`` with ``enqueue``'s options; ``params`` as a mapping."""
        engine = default_engine()
        with engine.begin() as conn:
            task_id = enqueue(
                conn,
                self,
                params,
                queue=queue,
                priority=priority,
                delay=delay,
                max_retries=max_retries,
                timeout=timeout,
                idempotency_key=idempotency_key,
            )
        return TaskHandle(task_id, engine=engine)

    def s(self, *args: P.args, **kwargs: P.kwargs) -> Step:
        """A step of a workflow running this job with these params (Celery's
        signature): ``jobplane.chain(fetch.s(day=d), store.s().set(pipe_result=True))``.
        ``.set(...)`` gives it options (queue, priority, retries, timeout, pipe_result)."""
        return Step(Submission(type=self.name, params=self.params(*args, **kwargs)))

    def new_task(self, *args: P.args, **kwargs: P.kwargs) -> NewTask:
        """A task of this job for ``jobplane.enqueue_many``, its params checked by mypy."""
        return NewTask(self, self.params(*args, **kwargs))

    def params(self, *args: P.args, **kwargs: P.kwargs) -> dict[str, Any]:
        """The task params (keyword arguments) a call with these arguments means.

        A task's params are keywords: positional arguments are named after the
        function's parameters; a ``*args`` or positional-only parameter cannot be sent.
        """
        if not args:
            return dict(kwargs)
        signature = inspect.signature(self.spec.fn)
        try:
            bound = signature.bind(*args, **kwargs)
        except TypeError as error:
            raise InvalidParams(f"params do not fit job {self.name!r}: {error}") from None
        params: dict[str, Any] = {}
        for name, value in bound.arguments.items():
            kind = signature.parameters[name].kind
            if kind is inspect.Parameter.VAR_KEYWORD:
                params.update(value)
            elif kind in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.POSITIONAL_ONLY):
                raise InvalidParams(
                    f"job {self.name!r}: parameter {name!r} is positional-only, and a task's "
                    "params are passed by keyword"
                )
            else:
                params[name] = value
        return params
