"""Session-wide set-up shared by every test folder.

Expensive real parts start once per session and only when a test asks for them:
the Prefect test server (`prefect_harness`), the real Prometheus over the sandbox fleet
(`tests/fixtures/prometheus.py`) and PostgreSQL (`tests/fixtures/postgres.py`).
"""

from __future__ import annotations

import os
import tempfile

# Prefect reads its settings at import time: keep the test run hermetic and quiet.
_HOME = tempfile.mkdtemp(prefix="remediation-tests-prefect-")
os.environ.setdefault("PREFECT_HOME", _HOME)
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW", "ignore")
os.environ.setdefault("PREFECT_SERVER_LOGGING_LEVEL", "WARNING")

pytest_plugins = [
    "tests.fixtures.harness",
    "tests.fixtures.postgres",
    "tests.fixtures.prometheus",
    "tests.fixtures.loki_discord",
    "tests.fixtures.slack",
    "tests.fixtures.anthropic",
    "tests.fixtures.jobs",
    "tests.fixtures.stack",
    "tests.fixtures.serve",
]
