"""The engine application code's ``.delay()`` and ``jobplane.task()`` use when they
are given none: one per process, from ``JOBPLANE_DATABASE_URL``, made at first use."""

from __future__ import annotations

from sqlalchemy import Engine


def default_engine() -> Engine:
    """This process's engine for jobplane's own short transactions."""
    raise NotImplementedError
