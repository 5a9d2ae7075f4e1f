"""Names on the broker that the relay and the workers must agree on.

The relay (``jobplane.broker.enqueue``) publishes on the wake-up channel and the workers
(``jobplane.broker.wake_listener``) listen on it: one name, so neither can drift from the
other.
"""

from __future__ import annotations


def wake_channel(namespace: str) -> str:
    """The Redis pub/sub channel that tells idle consumers of a queue to fetch now.

    Each message's payload is a queue name. ``namespace`` is the broker's key prefix
    (Dramatiq's default: ``"dramatiq"``). Pub/sub channels are shared by every database
    of a Redis server, so a worker may be woken by a relay publishing to another
    database: harmless, it fetches, finds nothing and waits again.
    """
    return f"{namespace}:jobplane-wake"
