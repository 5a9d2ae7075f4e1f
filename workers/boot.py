"""The broker module Dramatiq's CLI loads in each worker process (``jobplane worker``).

Importing it loads the job modules and builds the broker with every job's actor;
the database engine is made lazily, after the fork, by the lifecycle middleware.
"""

from __future__ import annotations

from jobplane.db import engine_from_settings
from jobplane.registry import load_jobs
from jobplane.settings import get_settings
from jobplane.workers.broker import worker_broker

settings = get_settings()
load_jobs(settings.job_modules, demo_jobs=settings.demo_jobs)
broker = worker_broker(settings, lambda: engine_from_settings(settings))
