"""Fold the task counts once, as the maintenance leader's count folder does every few
seconds (``jobplane.maintenance.folder``): ``bench/scale.py`` runs this after a fill,
in a process of its own (the bench itself does not import jobplane), with
``JOBPLANE_DATABASE_URL`` set. Without it, a read would add up one row per key for each
of the fill's statements, which no running platform leaves.
"""

from __future__ import annotations

from jobplane import store
from jobplane.db import engine_from_settings
from jobplane.settings import get_settings


def main() -> None:
    engine = engine_from_settings(get_settings())
    try:
        with engine.begin() as conn:
            before, after = store.counts.fold(conn)
    finally:
        engine.dispose()
    print(f"task counts: {before:,} rows folded into {after:,}")


if __name__ == "__main__":
    main()
