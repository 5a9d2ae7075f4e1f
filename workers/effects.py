"""A job's database effects, committed with its completion: ``ctx.transaction()``.

The session a job body gets writes to the worker's database in a transaction that
jobplane commits only once the body has returned, together with the guarded UPDATE
that records the task completed with its result. Either both are in, or neither is:

- the block's end flushes (the job's own errors, an IntegrityError, surface at the
  block) and checks that this attempt still owns the task; if it does not (recovered
  after its worker was presumed lost, or cancelled), the transaction rolls back and
  ``StaleAttempt`` is raised right there;
- after the body, the lifecycle runs the completion on the same connection and commits
  (``commit``). If the completion matches no row (the attempt went stale meanwhile),
  everything rolls back and nothing is recorded;
- a body that raises after the block, a worker that dies, a commit that fails: the
  effects are not in, and the next attempt makes them. A commit that went through but
  whose answer was lost leaves the task completed, so the failed attempt's guarded
  retry matches nothing: still once.

The user's models name their tables without a schema, as jobplane's do; the worker's
engine translates jobplane's into ``JOBPLANE_DB_SCHEMA``. The session's connection has
that translation cleared, and jobplane's own statements on it get it back for their
duration (``jobplane.db.jobplane_schema``).
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, Engine
from sqlalchemy.orm import Session

from jobplane import store
from jobplane.db import jobplane_schema
from jobplane.domain import JobplaneError, StaleAttempt
from jobplane.library.enqueue import enqueue
from jobplane.library.jobs import Job

logger = logging.getLogger(__name__)


class TransactionAlreadyUsed(JobplaneError):
    """A job body opened ctx.transaction() a second time."""

    def __init__(self) -> None:
        super().__init__(
            "a job body may open ctx.transaction() once: its commit is the task's "
            "completion, and a task completes once; put all of the job's writes in one block"
        )


class EffectsNotCommitted(JobplaneError):
    """The commit of the job's ctx.transaction() failed: its writes are not in."""

    # The attempt fails, and is retried if it has retries left, whatever ``retry_for``
    # says: the body did not fail.


class _State(enum.Enum):
    NEW = "new"  #: made, not entered yet
    IN_BLOCK = "in block"  #: the body is inside ``with ctx.transaction()``
    PENDING = "pending"  #: the block ended well; the commit waits for the body's result
    DONE = "done"  #: committed or rolled back


class EffectsTransaction:
    """One run's ``ctx.transaction()``: its connection, its session, its one commit.

    Parameters:
      engine: the worker's engine (jobplane's tables in ``schema``).
      schema: ``JOBPLANE_DB_SCHEMA`` (None: the default schema).
      task_id, dispatch: the run whose completion the commit records.
    """

    def __init__(self, engine: Engine, *, schema: str | None, task_id: str, dispatch: int):
        self.engine = engine
        self.schema = schema
        self.task_id = task_id
        self.dispatch = dispatch
        #: Set when the block found this attempt no longer the task's.
        self.stale = False
        self._state = _State.NEW
        self._conn: Connection | None = None

    @property
    def in_block(self) -> bool:
        return self._state is _State.IN_BLOCK

    @property
    def pending(self) -> bool:
        """The block ended well: its writes wait for the completion's commit."""
        return self._state is _State.PENDING

    @property
    def holds_write_lock(self) -> bool:
        """Whether the transaction holds the whole database's write lock (SQLite's)."""
        open_ = self._state in (_State.IN_BLOCK, _State.PENDING)
        return open_ and self.engine.dialect.name == "sqlite"

    @contextmanager
    def block(self) -> Iterator[Session]:
        """The ``with`` block: a session whose writes are flushed and checked at its end."""
        if self._state is not _State.NEW:
            raise TransactionAlreadyUsed()
        conn = self.engine.connect()
        self._conn = conn
        # The user's tables stay in their own schema; jobplane's statements say theirs.
        conn.execution_options(schema_translate_map=None)
        conn.begin()
        # The session works in a savepoint of jobplane's transaction: a session.commit()
        # or session.rollback() in the block acts on that alone, never on the outcome.
        session = Session(
            bind=conn, join_transaction_mode="create_savepoint", expire_on_commit=False
        )
        self._state = _State.IN_BLOCK
        try:
            yield session
            session.commit()  # the flush: the job's own errors surface at the block
            self._check_current()
        except BaseException:
            _close_quietly(session)
            self.discard()
            raise
        session.close()
        self._state = _State.PENDING

    def enqueue(
        self, job_type: str | Job[..., Any], params: Mapping[str, Any] | None, **options: Any
    ) -> str:
        """``jobplane.enqueue`` in this transaction: committed with the completion."""
        assert self._conn is not None and self.in_block
        with jobplane_schema(self._conn, self.schema) as conn:
            return enqueue(conn, job_type, params, **options)

    def commit(self, complete: Callable[[Connection], bool]) -> bool:
        """Run ``complete`` (the guarded completion) in this transaction and commit both.

        False, everything rolled back, when ``complete`` matched no row (this attempt
        is no longer the task's). Raises if the commit fails: nothing is in then,
        unless the commit went through and only its answer was lost.
        """
        assert self._conn is not None and self.pending
        conn = self._conn
        try:
            with jobplane_schema(conn, self.schema):
                completed = complete(conn)
            if completed:
                conn.commit()
            return completed
        finally:
            self.discard()

    def settle(
        self,
        exception: BaseException | None,
        *,
        storable: bool,
        complete: Callable[[Connection], bool],
    ) -> tuple[bool, BaseException | None]:
        """After the body: commit with ``complete`` (the completion) if the body succeeded.

        (True, None): settled, committed together, or rolled back with nothing recorded
        because the attempt went stale before the commit. (False, error): the writes are
        not in, and ``error`` is the attempt's outcome, recorded as any other (None: the
        body succeeded but its result is not ``storable``, or it never used its block).
        """
        if self.stale and exception is None:  # the body caught StaleAttempt
            exception = StaleAttempt(f"task {self.task_id}: its ctx.transaction() was stale")
        if exception is not None or not self.pending or not storable:
            self.discard()
            return False, exception
        try:
            completed = self.commit(complete)
        except Exception as error:
            logger.warning(
                "task %s: its ctx.transaction() could not commit, so its writes are not in; "
                "the attempt fails: %s",
                self.task_id,
                error,
            )
            failure = EffectsNotCommitted(
                f"ctx.transaction() could not commit: {first_line(error)}"
            )
            failure.__cause__ = error
            return False, failure
        if not completed:
            logger.warning(
                "task %s (dispatch %s) finished, but this attempt was no longer the task's: "
                "its ctx.transaction() rolled back, nothing recorded",
                self.task_id,
                self.dispatch,
            )
        return True, None

    def discard(self) -> None:
        """Roll back whatever is not committed and give the connection back (idempotent)."""
        self._state = _State.DONE
        conn, self._conn = self._conn, None
        if conn is not None:
            _close_quietly(conn)

    def _check_current(self) -> None:
        assert self._conn is not None
        with jobplane_schema(self._conn, self.schema) as conn:
            current = store.claims.is_current_run(conn, self.task_id, self.dispatch)
        if not current:
            self.stale = True
            raise StaleAttempt(
                f"task {self.task_id}: this attempt (dispatch {self.dispatch}) is no longer "
                "the task's (it was cancelled, or recovered after its worker was presumed "
                "lost); its ctx.transaction() rolled back and wrote nothing"
            )


def first_line(error: BaseException) -> str:
    """``error`` in a line: the driver's words, not the SQL."""
    cause = getattr(error, "orig", None) or error
    text = str(cause).splitlines()[0] if str(cause) else ""
    return f"{type(cause).__name__}: {text}"


def _close_quietly(resource: Session | Connection) -> None:
    """Close (rolling back): on a broken connection that may fail; nothing is lost then."""
    try:
        resource.close()
    except Exception as error:
        logger.debug("closing a job's transaction failed: %s", error)
