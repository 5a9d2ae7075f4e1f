"""What application code uses: enqueueing in its own transaction, ``Job`` objects,
task handles that wait, and the HTTP client. Re-exported at the top of ``jobplane``."""
