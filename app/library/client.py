"""``jobplane.Client`` and ``jobplane.AsyncClient``: the HTTP API from Python."""
