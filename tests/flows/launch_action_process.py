"""Run one `remediate_action` in a process of its own, so a test can SIGKILL it.

    python -m tests.flows.launch_action_process < parameters.json

The parameters (action, policy, blocks, settings) come as JSON on stdin; the Prefect API
is whatever PREFECT_API_URL names (the test harness's server).
"""

from __future__ import annotations

import asyncio
import json
import sys

from flows.remediate_action import remediate_action


def main() -> int:
    params = json.load(sys.stdin)
    asyncio.run(remediate_action(**params))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
