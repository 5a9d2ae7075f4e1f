"""Scheduled jobs the schedule tests declare (a market-data team's table, on Asia/Taipei)."""

from __future__ import annotations

from periodiq import cron

from jobplane import job


@job("sync_shioaji_futures", periodic=cron("30 15 * * 1-5"), timezone="Asia/Taipei")
def sync_shioaji_futures() -> None:
    """Weekdays 15:30 Taipei."""


@job("sync_daily_prices", periodic=cron("0 21 * * 1-5"), timezone="Asia/Taipei", misfire="latest")
def sync_daily_prices() -> None:
    """Weekdays 21:00 Taipei."""


@job("weekly_report", periodic=cron("0 9 * * 0"), timezone="Asia/Taipei", misfire="skip")
def weekly_report() -> None:
    """Sundays 09:00 Taipei."""
