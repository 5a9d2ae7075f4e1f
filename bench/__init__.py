"""Benchmarks and crash/recovery runs against real PostgreSQL and Redis (not timed tests)."""
