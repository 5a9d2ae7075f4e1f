"""The base of every maintenance service, as the leader's runner drives it.

Hooks with no-op defaults, as Dramatiq's ``Middleware``: a service overrides
``run_once`` and whichever of the others it cares about.
"""

from __future__ import annotations


class Service:
    """One maintenance service: a pass at a time, each saying when the next is due."""

    #: Names the service in the runner's log lines.
    name = "service"

    def run_once(self) -> float:
        """Do one pass; returns the seconds until the next pass is due.

        Raising is fine: the runner logs the error and tries again after a back-off,
        and the other services go on.
        """
        raise NotImplementedError

    def note_outage(self) -> None:
        """This process just failed to reach the database."""

    def note_reachable(self) -> None:
        """This process just reached the database (a round trip succeeded)."""
