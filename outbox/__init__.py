"""The outbox relay: getting committed tasks onto the broker."""
