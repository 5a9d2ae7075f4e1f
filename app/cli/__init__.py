"""The ``jobplane`` command: the composition root that starts each process."""
