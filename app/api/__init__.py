"""The HTTP API (FastAPI): routes, their schemas, auth and error mapping."""
