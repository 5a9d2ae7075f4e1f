"""The engine application code's ``.delay()`` and ``jobplane.task()`` use when they
are given none: one per process, from ``JOBPLANE_DATABASE_URL``, made at first use.

The library's only reader of the environment (``get_settings``): application code
does not start through jobplane's CLI, so nothing else hands it jobplane's settings.
"""

from __future__ import annotations

import os
import threading

from sqlalchemy import Engine

from jobplane.db import engine_from_settings
from jobplane.settings import Settings, get_settings

_lock = threading.Lock()
_engine: Engine | None = None


def library_settings() -> Settings:
    """This process's jobplane settings (``JOBPLANE_*``), read once."""
    return get_settings()


def default_engine() -> Engine:
    """This process's engine for jobplane's own short transactions.

    Made at the first call, with the settings' URL, schema and timeouts; every thread
    shares it (SQLAlchemy engines are thread-safe).
    """
    global _engine
    engine = _engine
    if engine is None:
        with _lock:
            if _engine is None:
                _engine = engine_from_settings(library_settings())
            engine = _engine
    return engine


def reset_default_engine() -> None:
    """Close the default engine's connections and forget it and the settings it was
    made from: the next use reads ``JOBPLANE_*`` again (for tests that change them)."""
    global _engine
    with _lock:
        engine, _engine = _engine, None
        get_settings.cache_clear()
    if engine is not None:
        engine.dispose()


def _forget_after_fork() -> None:
    # A forked child must not use the parent's pooled connections: it makes its own
    # (and a lock another thread of the parent held would never be released).
    global _engine, _lock
    _lock = threading.Lock()
    if _engine is not None:
        _engine.dispose(close=False)
        _engine = None


os.register_at_fork(after_in_child=_forget_after_fork)
