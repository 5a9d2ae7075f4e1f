"""``jobplane.Client`` and ``jobplane.AsyncClient``: the HTTP API from Python.

::

    with jobplane.Client("http://jobs.internal:8000", token) as client:
        task = client.submit("reports.build", {"month": "2026-10"})
        result = client.wait(task.task_id, timeout=600)

Both take the API's URL and token, or read ``JOBPLANE_URL`` (default
http://127.0.0.1:8000) and ``JOBPLANE_API_TOKEN`` from the environment. They return the
typed results of ``jobplane.library.results`` and raise the library's own exceptions
(``jobplane.library.http_errors``). Each operation's request is written once, in
``jobplane.library.calls``; the two classes only send it, one blocking, one awaiting.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Mapping
from datetime import datetime
from types import TracebackType
from typing import Any, TypeVar

import httpx

from jobplane import domain
from jobplane.library import calls, http_errors
from jobplane.library.long_poll import LongPoll, outcome
from jobplane.library.results import LogPage, Task, TaskPage, Workflow, WorkflowPage
from jobplane.library.workflow_json import workflow_body
from jobplane.library.workflows import Node

T = TypeVar("T")

#: Seconds to wait for the API to connect and answer (a long poll's hold comes on top).
DEFAULT_TIMEOUT = 30.0
#: A page of log lines, as the API's own default.
LOG_PAGE_SIZE = 100


class Client:
    """The API at ``url`` with ``token``, over one ``httpx.Client`` (thread-safe).

    ``timeout``: seconds for each request (default 30). Close it, or use it in ``with``.
    """

    def __init__(
        self, url: str | None = None, token: str | None = None, *, timeout: float = DEFAULT_TIMEOUT
    ) -> None:
        base, headers = calls.endpoint(url, token)
        self._timeout = timeout
        self._http = httpx.Client(base_url=base, headers=headers, timeout=timeout)

    @property
    def url(self) -> str:
        return str(self._http.base_url).rstrip("/")

    def submit(
        self,
        type: str,
        params: Mapping[str, Any] | None = None,
        *,
        queue: str | None = None,
        priority: int | None = None,
        delay: float | None = None,
        max_retries: int | None = None,
        timeout: int | None = None,
        idempotency_key: str | None = None,
    ) -> Task:
        """Submit a job of ``type``: the new task (or, with an ``idempotency_key`` used
        before for the same submission, that task). ``delay`` and ``timeout`` (the job's
        time limit) in seconds; what is None takes the job's defaults."""
        body = calls.submission(
            type,
            params,
            queue=queue,
            priority=priority,
            delay=delay,
            max_retries=max_retries,
            timeout=timeout,
        )
        return self._send(calls.submit(body, idempotency_key))

    def submit_batch(self, items: Iterable[Mapping[str, Any]]) -> list[str]:
        """Submit 1 to 1,000 jobs in one transaction, all or none; their ids, in order.
        Each item holds ``submit``'s arguments by name: ``{"type": …, "params": …, …}``
        (no ``idempotency_key``)."""
        return self._send(calls.submit_batch(items))

    def get(self, task_id: str) -> Task:
        """The task as it is now (``TaskNotFound`` if there is none)."""
        return self._send(calls.get_task(task_id))

    def wait(self, task_id: str, timeout: float | None = None) -> Any:
        """Wait until the task is terminal: its result, or ``TaskFailed`` (carrying the
        error), ``TaskCancelled``; ``TimeoutError`` after ``timeout`` seconds (None: no
        limit). The API holds each request until the task ends (up to 60 s a request).
        An API that answers 503 with ``Retry-After`` (it holds as many waits as it may)
        is asked again after that long, while the timeout allows; ``ApiUnavailable``
        otherwise."""
        poll = LongPoll(task_id, timeout)
        while True:
            started = time.monotonic()
            try:
                task = self._send(poll.next_call())
            except domain.ApiUnavailable as error:
                time.sleep(poll.pause_after(error))
                continue
            if task.status.is_terminal:
                return outcome(task)
            time.sleep(poll.pause(task, time.monotonic() - started))

    def cancel(self, task_id: str) -> Task:
        """Cancel a pending task, or ask a running one to stop (``cancel_requested``)."""
        return self._send(calls.cancel(task_id))

    def retry(self, task_id: str) -> Task:
        """Start a new run of a failed, cancelled or skipped task."""
        return self._send(calls.retry(task_id))

    def logs(
        self,
        task_id: str,
        *,
        level: str | None = None,
        page: int = 1,
        page_size: int = LOG_PAGE_SIZE,
    ) -> LogPage:
        """One page (from 1) of the task's log lines, oldest first; only ``level``'s
        lines (DEBUG … CRITICAL) when given."""
        return self._send(calls.logs(task_id, level=level, page=page, page_size=page_size))

    def list_tasks(
        self,
        *,
        status: str | None = None,
        type: str | None = None,
        queue: str | None = None,
        search: str | None = None,
        page: int = 1,
        page_size: int = 50,
    ) -> TaskPage:
        """One page (from 1) of tasks, newest first, filtered; ``search``: the start of an id."""
        call = calls.list_tasks(
            status=status, type=type, queue=queue, search=search, page=page, page_size=page_size
        )
        return self._send(call)

    def submit_workflow(
        self, workflow: Node | Mapping[str, Any], *, idempotency_key: str | None = None
    ) -> Workflow:
        """Submit a workflow, written in one transaction: a ``jobplane.chain(...)`` /
        ``group(...)`` / step tree, or ``POST /api/workflows``'s JSON as a mapping
        (``{"chain": [...]}``). The new workflow with its steps (or, with an
        ``idempotency_key`` used before for the same workflow, that one; for another,
        ``IdempotencyConflict``). A wrong step is ``InvalidParams`` / ``UnknownJobType``
        naming it (``workflow.chain[1]: …``)."""
        return self._send(calls.submit_workflow(workflow_body(workflow), idempotency_key))

    def workflows(
        self, *, status: str | None = None, page: int = 1, page_size: int = 50
    ) -> WorkflowPage:
        """One page (from 1) of workflows, newest first; only ``status``'s when given."""
        return self._send(calls.list_workflows(status=status, page=page, page_size=page_size))

    def workflow(self, workflow_id: str) -> Workflow:
        """The workflow with its steps in order (``WorkflowNotFound`` if there is none)."""
        return self._send(calls.get_workflow(workflow_id))

    def cancel_workflow(self, workflow_id: str) -> Workflow:
        """Cancel every step not finished yet (running ones once their bodies stop);
        ``InvalidTransition`` if the workflow already ended."""
        return self._send(calls.cancel_workflow(workflow_id))

    def retry_workflow(self, workflow_id: str) -> Workflow:
        """Run a failed or cancelled workflow again from the steps that did not
        complete; ``InvalidTransition`` otherwise."""
        return self._send(calls.retry_workflow(workflow_id))

    def stats(self) -> dict[str, Any]:
        """The API's JSON ``{counts, total, outbox, workers, …}``."""
        return self._send(calls.stats())

    def schedules(self) -> dict[str, Any]:
        """The API's JSON ``{schedules: [...]}``: each with its next and last runs."""
        return self._send(calls.schedules())

    def run_schedule(self, name: str) -> Task:
        """Run schedule ``name`` now; the new task."""
        return self._send(calls.run_schedule(name))

    def catch_up(self, *, dry_run: bool = False, now: datetime | None = None) -> dict[str, Any]:
        """Catch up the runs the schedules missed; the API's JSON ``{runs: [...]}``.
        ``dry_run`` writes nothing, and only a dry run may be evaluated as of another
        ``now`` (aware, inside the catch-up window) than the API's clock."""
        return self._send(calls.catch_up(dry_run=dry_run, now=now))

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _send(self, call: calls.Call[T]) -> T:
        try:
            response = self._http.request(
                call.method,
                call.path,
                params=call.params,
                json=call.json,
                headers=call.headers,
                timeout=_timeout(self._timeout, call),
            )
        except httpx.HTTPError as error:
            raise http_errors.unreachable(self._http.base_url, error) from error
        if not response.is_success:
            raise http_errors.error_from_answer(response)
        return call.parse(response.json())


class AsyncClient:
    """``Client``'s methods, to await, over one ``httpx.AsyncClient``.

    Close it with ``await client.aclose()``, or use it in ``async with``.
    """

    def __init__(
        self, url: str | None = None, token: str | None = None, *, timeout: float = DEFAULT_TIMEOUT
    ) -> None:
        base, headers = calls.endpoint(url, token)
        self._timeout = timeout
        self._http = httpx.AsyncClient(base_url=base, headers=headers, timeout=timeout)

    @property
    def url(self) -> str:
        return str(self._http.base_url).rstrip("/")

    async def submit(
        self,
        type: str,
        params: Mapping[str, Any] | None = None,
        *,
        queue: str | None = None,
        priority: int | None = None,
        delay: float | None = None,
        max_retries: int | None = None,
        timeout: int | None = None,
        idempotency_key: str | None = None,
    ) -> Task:
        """As ``Client.submit``."""
        body = calls.submission(
            type,
            params,
            queue=queue,
            priority=priority,
            delay=delay,
            max_retries=max_retries,
            timeout=timeout,
        )
        return await self._send(calls.submit(body, idempotency_key))

    async def submit_batch(self, items: Iterable[Mapping[str, Any]]) -> list[str]:
        """As ``Client.submit_batch``."""
        return await self._send(calls.submit_batch(items))

    async def get(self, task_id: str) -> Task:
        """As ``Client.get``."""
        return await self._send(calls.get_task(task_id))

    async def wait(self, task_id: str, timeout: float | None = None) -> Any:
        """As ``Client.wait``; the event loop runs other work meanwhile."""
        poll = LongPoll(task_id, timeout)
        while True:
            started = time.monotonic()
            try:
                task = await self._send(poll.next_call())
            except domain.ApiUnavailable as error:
                await asyncio.sleep(poll.pause_after(error))
                continue
            if task.status.is_terminal:
                return outcome(task)
            await asyncio.sleep(poll.pause(task, time.monotonic() - started))

    async def cancel(self, task_id: str) -> Task:
        """As ``Client.cancel``."""
        return await self._send(calls.cancel(task_id))

    async def retry(self, task_id: str) -> Task:
        """As ``Client.retry``."""
        return await self._send(calls.retry(task_id))

    async def logs(
        self,
        task_id: str,
        *,
        level: str | None = None,
        page: int = 1,
        page_size: int = LOG_PAGE_SIZE,
    ) -> LogPage:
        """As ``Client.logs``."""
        return await self._send(calls.logs(task_id, level=level, page=page, page_size=page_size))

    async def list_tasks(
        self,
        *,
        status: str | None = None,
        type: str | None = None,
        queue: str | None = None,
        search: str | None = None,
        page: int = 1,
        page_size: int = 50,
    ) -> TaskPage:
        """As ``Client.list_tasks``."""
        call = calls.list_tasks(
            status=status, type=type, queue=queue, search=search, page=page, page_size=page_size
        )
        return await self._send(call)

    async def submit_workflow(
        self, workflow: Node | Mapping[str, Any], *, idempotency_key: str | None = None
    ) -> Workflow:
        """As ``Client.submit_workflow``."""
        call = calls.submit_workflow(workflow_body(workflow), idempotency_key)
        return await self._send(call)

    async def workflows(
        self, *, status: str | None = None, page: int = 1, page_size: int = 50
    ) -> WorkflowPage:
        """As ``Client.workflows``."""
        call = calls.list_workflows(status=status, page=page, page_size=page_size)
        return await self._send(call)

    async def workflow(self, workflow_id: str) -> Workflow:
        """As ``Client.workflow``."""
        return await self._send(calls.get_workflow(workflow_id))

    async def cancel_workflow(self, workflow_id: str) -> Workflow:
        """As ``Client.cancel_workflow``."""
        return await self._send(calls.cancel_workflow(workflow_id))

    async def retry_workflow(self, workflow_id: str) -> Workflow:
        """As ``Client.retry_workflow``."""
        return await self._send(calls.retry_workflow(workflow_id))

    async def stats(self) -> dict[str, Any]:
        """As ``Client.stats``."""
        return await self._send(calls.stats())

    async def schedules(self) -> dict[str, Any]:
        """As ``Client.schedules``."""
        return await self._send(calls.schedules())

    async def run_schedule(self, name: str) -> Task:
        """As ``Client.run_schedule``."""
        return await self._send(calls.run_schedule(name))

    async def catch_up(
        self, *, dry_run: bool = False, now: datetime | None = None
    ) -> dict[str, Any]:
        """As ``Client.catch_up``."""
        return await self._send(calls.catch_up(dry_run=dry_run, now=now))

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def _send(self, call: calls.Call[T]) -> T:
        try:
            response = await self._http.request(
                call.method,
                call.path,
                params=call.params,
                json=call.json,
                headers=call.headers,
                timeout=_timeout(self._timeout, call),
            )
        except httpx.HTTPError as error:
            raise http_errors.unreachable(self._http.base_url, error) from error
        if not response.is_success:
            raise http_errors.error_from_answer(response)
        return call.parse(response.json())


def _timeout(seconds: float, call: calls.Call[Any]) -> httpx.Timeout:
    """``seconds`` for each phase of the request; reading also waits out a long poll."""
    return httpx.Timeout(seconds, read=seconds + call.hold)
