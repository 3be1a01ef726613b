"""A durable PostgreSQL server for the benchmarks (Debian's package, a fresh data dir).

The tests' server (`tests/fixtures/postgres.py`: the `postgres` user, a free loopback
port, scram-sha-256) with `fsync` left on: the tests turn it off for speed, which would
flatter PostgreSQL against SQLite's durable commits. Stopped by `server.stop()`.
"""

from __future__ import annotations

from typing import Any


def start_postgres() -> Any:
    """A started durable PostgreSQL server; `create_database()` answers a fresh URL."""
    from tests.fixtures.postgres import PostgresServer

    server = PostgresServer(durable=True)
    try:
        server.start()
    except BaseException:
        server.stop()
        raise
    return server
