"""A separate process that claims issues in the ledger (for the concurrent-writer test),
or opens it (for the concurrent-upgrade test).

Usage: python -m tests.clients.ledger_worker URL CYCLE_ID START_AT FP...
It waits until START_AT (epoch seconds) so two workers hit the ledger together, then
claims the issues and confirms them reported, printing the new fingerprints as JSON.

Usage: python -m tests.clients.ledger_worker migrate URL START_AT
It waits until START_AT, opens the ledger (migrating it if it is older) and prints its
schema version and how many continuations it records, as JSON.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from datetime import UTC, datetime, timedelta

from clients.ledger import Ledger
from core.models import CheckName, Issue, Severity


async def main(url: str, cycle_id: str, start_at: float, fps: list[str]) -> None:
    ledger = Ledger(url)
    await ledger.ensure_schema()
    issues = []
    for fp in fps:
        host, check, subject = fp.split("|")
        issues.append(
            Issue(
                host=host,
                check=CheckName(check),
                subject=subject,
                severity=Severity.CRITICAL,
                observed_at=datetime.now(UTC),
            )
        )
    await asyncio.sleep(max(0.0, start_at - time.time()))
    new = []
    for issue in issues:  # one transaction per issue maximises interleaving
        decision = await ledger.episodes.claim_issues(
            [issue], cycle_id=cycle_id, now=datetime.now(UTC), ttl=timedelta(hours=6)
        )
        new += [i.fingerprint for i in decision.new]
    await ledger.episodes.confirm_reported(new, cycle_id=cycle_id, now=datetime.now(UTC))
    await ledger.aclose()
    print(json.dumps(new))


async def migrate(url: str, start_at: float) -> None:
    ledger = Ledger(url)
    await asyncio.sleep(max(0.0, start_at - time.time()))
    version = await ledger.ensure_schema()
    continuations = await ledger.operations.row_counts()
    await ledger.aclose()
    print(json.dumps({"version": version, "continuations": continuations["continuations"]}))


if __name__ == "__main__":
    if sys.argv[1] == "migrate":
        asyncio.run(migrate(sys.argv[2], float(sys.argv[3])))
    else:
        asyncio.run(main(sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4:]))
