"""``TaskHandle``: a submitted task, read again on demand, and waited for."""

from __future__ import annotations

from sqlalchemy import Engine


class TaskHandle:
    """A submitted task: ``.id`` now, its state on demand."""

    def __init__(self, task_id: str, *, engine: Engine | None = None) -> None:
        self.id = task_id
        self._engine = engine
