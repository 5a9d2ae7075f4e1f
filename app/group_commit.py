"""Group commit: many callers' small writes in one transaction.

A submission, a claim or a completion is one short statement, but each costs a whole
transaction: a pool checkout, a round trip, a COMMIT that waits for the WAL to reach
the disk, and the driver's and SQLAlchemy's work around each. Under load most of a
job's database time was that per-transaction part. Here callers hand their item to one
writer thread (a ``jobplane.drain.Drain``) and wait for it to be committed; the writer
takes every item queued meanwhile and writes them with one ``write(conn, items)`` call
in one transaction. When the load is low a batch is one item, and the only cost is the
hand-off between threads (tens of microseconds); when it is high, batches grow by
themselves.

A caller's item is committed before its wait returns, exactly as with its own
transaction: group commit trades nothing of durability for the throughput.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import Future
from typing import Generic, TypeVar

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from jobplane.db import HeldConnection
from jobplane.drain import Drain, DrainStopped
from jobplane.outages import is_transient, through_outages

logger = logging.getLogger(__name__)

ItemT = TypeVar("ItemT")
ResultT = TypeVar("ResultT")

DEFAULT_MAX_BATCH = 500  #: most items written in one transaction


class GroupCommit(Generic[ItemT, ResultT]):
    """Writes items from many threads or coroutines together, one transaction per batch.

    Parameters:
      engine: where to write.
      write: ``write(conn, items)`` writes a batch inside the given transaction and
        returns one result per item, in order. It must not commit.
      name: names the writer thread (and its log lines).
      max_batch: most items in one transaction (default 500).
      disconnect_retries: fresh connections tried when the held one was dead
        (default 0: the caller sees the error; only idempotent writes should retry).
      autocommit: ``write`` is a single statement, committed as it runs (one round
        trip fewer per batch); see ``jobplane.db.transaction``.
      retry_until: for writes safe to repeat: a batch that fails because the database
        is unreachable or busy (``jobplane.outages.is_transient``) is written again, with
        backoff, until it succeeds or this event is set; only then do its callers see
        the error. Default None: they see it at once.

    When a batch of several items fails otherwise, each item is written again on its
    own, so one bad item fails only its own caller.
    """

    def __init__(
        self,
        engine: Engine,
        write: Callable[[Connection, list[ItemT]], Sequence[ResultT]],
        *,
        name: str,
        max_batch: int = DEFAULT_MAX_BATCH,
        disconnect_retries: int = 0,
        autocommit: bool = False,
        retry_until: threading.Event | None = None,
    ) -> None:
        self.write = write
        self.name = name
        self.max_batch = max_batch
        self.retry_until = retry_until
        # Used by one thread at a time, the one holding ``_writing``: the writer thread,
        # or a caller of ``run`` that found nothing being written.
        self._writing = threading.Lock()
        self._connection = HeldConnection(
            engine, disconnect_retries=disconnect_retries, autocommit=autocommit
        )
        self._drain: Drain[tuple[ItemT, Future[ResultT]]] = Drain(
            handle=self._write_batch, name=name, max_batch=max_batch
        )

    def submit(self, item: ItemT) -> Future[ResultT]:
        """Queue ``item``; the future resolves once its batch has committed (or failed)."""
        future: Future[ResultT] = Future()
        self._drain.put((item, future))
        return future

    def run(self, item: ItemT) -> ResultT:
        """Write ``item`` and wait for its commit; raises what the write raised.

        While nothing is being written or queued, the caller writes ``item`` itself:
        handing it to the writer thread would cost a thread wake-up (up to milliseconds
        on a virtual machine) for no batching gain.
        """
        if self._drain.stopped:
            raise DrainStopped(f"{self.name} is closed")
        if self._drain.empty() and self._writing.acquire(blocking=False):
            try:
                future: Future[ResultT] = Future()
                self._write_held([(item, future)])
            finally:
                self._writing.release()
            return future.result()
        return self.submit(item).result()

    async def run_async(self, item: ItemT) -> ResultT:
        """``run`` for a coroutine: the event loop goes on while the batch commits."""
        return await asyncio.wrap_future(self.submit(item))

    async def aclose(self) -> None:
        """``close`` from a coroutine."""
        await asyncio.to_thread(self.close)

    def close(self) -> None:
        """Write what is queued, then stop the writer thread."""
        self._drain.stop()
        with self._writing:
            self._connection.close()

    def _write_batch(self, batch: list[tuple[ItemT, Future[ResultT]]]) -> None:
        """The writer thread's handler: one transaction for ``batch``."""
        with self._writing:
            self._write_held(batch)

    def _write_held(self, batch: list[tuple[ItemT, Future[ResultT]]]) -> None:
        """Write ``batch`` on the held connection; the caller holds ``_writing``."""
        items = [item for item, _ in batch]
        try:
            results = self._write_through_outages(items)
            _check_count(self.name, results, batch)
        except Exception as error:
            outage = self.retry_until is not None and is_transient(error)
            if len(batch) == 1 or outage:  # after an outage's retries, splitting won't help
                for _, future in batch:
                    future.set_exception(error)
            else:
                for entry in batch:
                    self._write_held([entry])
            return
        except BaseException as error:  # the thread is going down: nobody waits forever
            for _, future in batch:
                future.set_exception(error)
            raise
        for (_, future), result in zip(batch, results, strict=True):
            future.set_result(result)

    def _write_through_outages(self, items: list[ItemT]) -> Sequence[ResultT]:
        """``write`` on the held connection, again while the database is unreachable."""

        def once() -> Sequence[ResultT]:
            return self._connection.run(lambda conn: self.write(conn, items))

        if self.retry_until is None:
            return once()
        # Whatever failed, the next attempt takes a fresh connection.
        return through_outages(
            once, until=self.retry_until, what=self.name, on_failure=self._connection.close
        )


class AsyncGroupCommit(Generic[ItemT, ResultT]):
    """``GroupCommit`` for coroutines on one event loop, through an ``AsyncEngine``.

    The writer is a task on the loop, not a thread: a submission costs no thread hop
    (on a virtual machine, waking another thread can cost milliseconds) and no lock.
    ``write`` is a coroutine function, given a connection the writer holds between
    batches. Make it inside the loop that will use it (the API's lifespan).

    ``autocommit``: ``write`` is one statement for any batch, committed as it runs.
    A connection found dead fails its batch and is replaced for the next one (no
    retries: whether a statement that lost its connection committed is unknown).
    """

    def __init__(
        self,
        engine: AsyncEngine,
        write: Callable[[AsyncConnection, list[ItemT]], Awaitable[Sequence[ResultT]]],
        *,
        name: str,
        max_batch: int = DEFAULT_MAX_BATCH,
        autocommit: bool = False,
    ) -> None:
        self.engine = engine
        self.autocommit = autocommit
        self.write = write
        self.name = name
        self.max_batch = max_batch
        self._pending: list[tuple[ItemT, asyncio.Future[ResultT]]] = []
        self._writer: asyncio.Task[None] | None = None
        self._conn: AsyncConnection | None = None

    async def run_async(self, item: ItemT) -> ResultT:
        """Write ``item`` and wait for its commit; raises what the write raised."""
        future: asyncio.Future[ResultT] = asyncio.get_running_loop().create_future()
        self._pending.append((item, future))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._drain(), name=self.name)
        return await future

    async def aclose(self) -> None:
        """Let what is queued be written, then release the engine's connections."""
        if self._writer is not None:
            await self._writer
        await self._release_connection()
        await self.engine.dispose()

    async def _drain(self) -> None:
        # Everything queued while a batch was committing makes up the next one.
        while self._pending:
            batch = self._pending[: self.max_batch]
            del self._pending[: self.max_batch]
            await self._write(batch)

    async def _write(self, batch: list[tuple[ItemT, asyncio.Future[ResultT]]]) -> None:
        items = [item for item, _ in batch]
        try:
            results = await self._run(items)
            _check_count(self.name, results, batch)
        except Exception as error:
            if len(batch) == 1:
                _settle(batch[0][1], error=error)
            else:
                for entry in batch:  # one bad item must fail only its own caller
                    await self._write([entry])
            return
        for (_, future), result in zip(batch, results, strict=True):
            _settle(future, result=result)

    async def _run(self, items: list[ItemT]) -> Sequence[ResultT]:
        if self._conn is None:
            conn = await self.engine.connect()
            if self.autocommit:
                conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
            self._conn = conn
        try:
            if self.autocommit:
                return await self.write(self._conn, items)
            async with self._conn.begin():
                return await self.write(self._conn, items)
        except DBAPIError as error:
            if error.connection_invalidated:
                await self._release_connection()
            raise

    async def _release_connection(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            await conn.close()


def _check_count(name: str, results: Sequence[object], batch: Sequence[object]) -> None:
    """``write`` must give one result per item: anything else is a bug in it."""
    if len(results) != len(batch):
        raise RuntimeError(f"{name}: {len(results)} results for {len(batch)} items")


def _settle(
    future: asyncio.Future[ResultT],
    *,
    result: ResultT | None = None,
    error: BaseException | None = None,
) -> None:
    if future.done():  # its caller gave up (a cancelled request): the write stands
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)  # type: ignore[arg-type]
