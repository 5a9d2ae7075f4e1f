"""The outbox relay and the sweeper: getting committed tasks onto the broker, and back."""
