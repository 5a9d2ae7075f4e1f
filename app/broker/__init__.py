"""Everything that knows Dramatiq's or Redis's internals, in one place.

Brokers from a URL (``factory``), the pipelined calls of Dramatiq's Lua dispatch script
(``redis_dispatch``), batched enqueues (``enqueue``), the broker's epoch and which
messages it still holds (``state``), the wake-up channel (``channels``) and the idle
consumers it wakes (``consumer_wakeup``, ``wake_listener``), the acks sent in batches
(``ack_sender``). The relay and the workers use this package and never each other;
``tests/integration/test_broker_internals.py`` fails if a Dramatiq upgrade changes what
it relies on.
"""
