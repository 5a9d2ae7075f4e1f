"""A schedule that fires every minute, for the tests of processes that must fire it."""

from __future__ import annotations

from periodiq import cron

from jobplane import job


@job("every_minute", periodic=cron("* * * * *"))
def every_minute() -> None:
    """Every minute, UTC."""
