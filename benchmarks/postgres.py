"""A durable PostgreSQL server for the benchmarks (Debian's package, a fresh data dir).

Started the way `tests/fixtures/postgres.py` starts its server (as the `postgres` user,
on a free loopback port, scram-sha-256), but with `fsync` left on: the tests turn it off
for speed, which would flatter PostgreSQL against SQLite's durable commits. Stopped by
`server.stop()` (pg_ctl, then its own PID).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import time
from typing import Any


def start_postgres() -> Any:
    """A started durable PostgreSQL server; `create_database()` answers a fresh URL."""
    from tests.fixtures import postgres as pg

    class DurablePostgres(pg.PostgresServer):
        def start(self, deadline_s: float = 60.0) -> None:
            if os.geteuid() == 0:
                shutil.chown(self.dir, "postgres", "postgres")
            pwfile = self.dir / "pw"
            pwfile.write_text(pg.PG_PASSWORD + "\n")
            if os.geteuid() == 0:
                shutil.chown(pwfile, "postgres", "postgres")
            initdb = [
                str(self.bin / "initdb"),
                "-D",
                str(self.data),
                "-U",
                "postgres",
                "--auth=scram-sha-256",
                f"--pwfile={pwfile}",
                "-E",
                "UTF8",
            ]
            subprocess.run(pg._as_postgres(initdb), check=True, capture_output=True)
            self.proc = subprocess.Popen(
                pg._as_postgres(
                    [
                        str(self.bin / "postgres"),
                        "-D",
                        str(self.data),
                        "-p",
                        str(self.port),
                        "-c",
                        "listen_addresses=127.0.0.1",
                        "-c",
                        f"unix_socket_directories={self.dir}",
                    ]
                ),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
            end = time.monotonic() + deadline_s
            while time.monotonic() < end:
                if self.proc.poll() is not None:
                    err = self.proc.stderr.read().decode() if self.proc.stderr else ""
                    raise RuntimeError(f"postgres exited: {err[-2000:]}")
                try:
                    asyncio.run(self._execute("SELECT 1"))
                    return
                except Exception:  # noqa: BLE001 - not accepting connections yet
                    time.sleep(0.1)
            raise RuntimeError("postgres did not become ready in time")

    server = DurablePostgres()
    try:
        server.start()
    except BaseException:
        server.stop()
        raise
    return server
