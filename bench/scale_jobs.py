"""The job types of ``bench/scale.py``'s filled table, registered in its API
(``JOBPLANE_JOBS=bench.scale_jobs``) so that /metrics and the schedules list know them as
a deployment's API would. Nothing runs them: the bench starts no worker.
"""

from __future__ import annotations

from typing import Any

from periodiq import cron

from bench.scale_fill import SCHEDULES, TYPES
from jobplane import job


def _register(name: str, queue: str, **options: Any) -> None:
    def body(**_params: Any) -> None:
        """Never run: the bench measures reads of the table, not jobs."""

    job(name, queue=queue, **options)(body)


for _mix in TYPES:
    _register(_mix.name, _mix.queue, priority=_mix.priority, timeout=_mix.timeout)
for _schedule in SCHEDULES:
    _register(_schedule.name, _schedule.queue, periodic=cron(_schedule.cron), misfire="skip")
