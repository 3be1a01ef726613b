"""The sandbox fleet exporter in a process of its own, continuing a backfilled history.

    python -m benchmarks.fleet_server STARTED_AT SCENARIO_JSON

Serves the hosts of the scenario file (`{"hosts": [names], "patches": {host: merge
patch}}`) as if their history began at `STARTED_AT` (unix time) with the patches applied
then — exactly what `prometheus_backfill.simulate` plays
for a one-segment history, so every counter continues the backfilled series without a
reset. Prints its URL on the first line of stdout and serves until stdin closes.

A separate process keeps the exporter's scrape handling (hundreds of scrapes a second
at 1,000 hosts) off the benchmark process's GIL.
"""

from __future__ import annotations

import json
import sys

from sandbox.fleet import Fleet


def main() -> int:
    started_at, scenario_path = float(sys.argv[1]), sys.argv[2]
    with open(scenario_path) as f:
        scenario = json.load(f)
    fleet = Fleet(scenario["hosts"], started_at=started_at)
    if scenario["patches"]:
        fleet.apply_scenario(scenario["patches"], at=started_at)
    fleet.start()
    print(fleet.url, flush=True)
    try:
        sys.stdin.read()  # until the parent closes the pipe (or dies)
    finally:
        fleet.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
