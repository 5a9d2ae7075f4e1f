"""Maintenance: what keeps the platform whole, run by one elected leader.

Every relay and scheduler process is a candidate (``leader.Elector``); the leader runs
each service at its own interval (``runner.Maintenance``):

- ``scheduler``: records schedules' runs as they fall due, with catch-up (``catchup``);
- ``rescuer``: recovers the tasks of lost workers and the messages a broker lost;
- ``cleaner``: retention, deleting finished tasks and trimming the runs ledger.

So recovery never depends on one kind of process being deployed, and a standby takes
over within seconds of the leader's death (River's ``internal/maintenance`` under its
``internal/leadership`` elector).
"""
