"""A worker process's claims and completions, group-committed across its threads.

Each of a worker's threads claims a task before its body and completes it after. For
short jobs those two transactions were most of the worker's and the database's work
per job; here the claims (and the completions) of all threads that arrive together
share one statement and one commit (``jobplane.group_commit``). A thread still waits for
its own claim to be committed before the body runs. Its completion is committed before
Dramatiq acks the message, exactly as with a transaction of its own; on Redis the thread
need not wait for that, and takes its next message at once
(``jobplane.broker.consumer_wakeup.ack_after``).

Both are guarded UPDATEs, safe to repeat, so both ride through a database outage: a
batch that fails because the database is unreachable is written again, with backoff,
until it commits. Claims stop retrying when the worker starts to stop (the message then
goes back to the broker); completions go on for ``close``'s grace period.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from sqlalchemy import Connection, Engine

from jobplane import store
from jobplane.group_commit import GroupCommit
from jobplane.models import utcnow
from jobplane.store.rows import ClaimedTask

#: Fresh connections tried after a dead one (0.2 s, 0.4 s, 0.8 s apart): claims and
#: completions are guarded UPDATEs, safe to repeat.
DISCONNECT_RETRIES = 3
#: How long a stopping worker goes on retrying completions while the database is
#: unreachable, in s; after it, a finished task stays running and is recovered.
DEFAULT_CLOSE_GRACE_S = 10.0

Claim = tuple[str, int]  #: task id, dispatch
Completion = tuple[str, int, Any]  #: task id, dispatch, result


class TaskWrites:
    """Claims and completions of one worker process, each kind in shared transactions.

    Parameters:
      engine: the process's engine.
      worker_name: returns the name recorded on claimed tasks (host:pid), read at
        each batch because a forked process learns its pid late.
    """

    def __init__(self, engine: Engine, worker_name: Callable[[], str]) -> None:
        self.worker_name = worker_name
        #: Set when claims (completions) must stop riding out an outage.
        self.claims_stopped = threading.Event()
        self.completions_stopped = threading.Event()
        # On PostgreSQL a batch is one UPDATE: committed as it runs, one round trip.
        single_statement = engine.dialect.name == "postgresql"
        self._claims: GroupCommit[Claim, ClaimedTask | None] = GroupCommit(
            engine,
            self._claim_batch,
            name="jobplane-claims",
            disconnect_retries=DISCONNECT_RETRIES,
            autocommit=single_statement,
            retry_until=self.claims_stopped,
        )
        self._completions: GroupCommit[Completion, bool] = GroupCommit(
            engine,
            self._complete_batch,
            name="jobplane-completions",
            disconnect_retries=DISCONNECT_RETRIES,
            autocommit=single_statement,
            retry_until=self.completions_stopped,
        )

        # A workflow's step or a task with callbacks: its follow-ups must commit with its
        # completion, so its batches are transactions of their own (never autocommit).
        self._completions_with_follow_ups: GroupCommit[Completion, bool] = GroupCommit(
            engine,
            self._complete_batch,
            name="jobplane-completions-with-follow-ups",
            disconnect_retries=DISCONNECT_RETRIES,
            retry_until=self.completions_stopped,
        )

    def claim(self, task_id: str, dispatch: int) -> ClaimedTask | None:
        """The claimed row (pending → running), or None if this message may not run it.

        Waits out a database outage; raises only once ``stop_claiming`` was called or
        for an error that is not an outage's."""
        return self._claims.run((task_id, dispatch))

    def complete(
        self, task_id: str, dispatch: int, result: Any, *, follow_ups: bool = False
    ) -> Future[bool]:
        """Record the result; the future says False if the task is no longer this
        attempt's. Resolved once committed, with the task's ``follow_ups`` if it has any
        (``ClaimedTask.follow_ups``: they are written in the same transaction)."""
        writer = self._completions_with_follow_ups if follow_ups else self._completions
        return writer.submit((task_id, dispatch, result))

    def stop_claiming(self) -> None:
        """Claims waiting out an outage give up (their messages go back to the broker)."""
        self.claims_stopped.set()

    def close(self, grace: float = DEFAULT_CLOSE_GRACE_S) -> None:
        """Write what is queued and stop the writer threads; completions still waiting
        out an outage after ``grace`` seconds give up."""
        self.stop_claiming()
        timer = threading.Timer(grace, self.completions_stopped.set)
        timer.daemon = True
        timer.start()
        try:
            self._claims.close()
            self._completions.close()
            self._completions_with_follow_ups.close()
        finally:
            timer.cancel()
            self.completions_stopped.set()

    def _claim_batch(self, conn: Connection, claims: list[Claim]) -> list[ClaimedTask | None]:
        return store.claims.claim_tasks(conn, claims, worker=self.worker_name(), now=utcnow())

    def _complete_batch(self, conn: Connection, completions: list[Completion]) -> list[bool]:
        return store.claims.complete_tasks(conn, completions, utcnow())
