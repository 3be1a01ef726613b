"""One reconciler pass in a process of its own, so a test can SIGKILL it mid-continuation.

    python -m tests.flows.reconcile_process < options.json

Options (JSON on stdin): `blocks`, `policy`, `stale_after_seconds`, `pause` ("before" or
"after" the fresh run is created) and `dir`. At that point the process writes
`<dir>/paused` (what it is continuing, as JSON; the test waits for that file) and holds
there until it is killed. The Prefect API is whatever PREFECT_API_URL names (the test
harness's server).
"""

from __future__ import annotations

import asyncio
import json
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

from prefect.client.orchestration import get_client

from blocks.names import BlockNames
from clients.ledger_jobs import ActionLiveness
from core.liveness import ActionRun
from core.policy import load_policy
from tasks.connections import open_connections
from tasks.reconcile import Reconciler


class PausingReconciler(Reconciler):
    """The real reconciler, held at the create step of a continuation."""

    def __init__(self, *args: Any, pause: str, where: Path, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.pause, self.where = pause, where

    async def hold(self, view: ActionLiveness, dead: ActionRun, new_run_id: str | None) -> None:
        what = {"action_id": view.action_id, "dead_run_id": str(dead.id), "new_run_id": new_run_id}
        (self.where / "paused.tmp").write_text(json.dumps(what))
        (self.where / "paused.tmp").rename(self.where / "paused")  # seen whole or not at all
        await asyncio.Event().wait()  # until the test's SIGKILL

    async def start_continuation(
        self,
        view: ActionLiveness,
        dead: ActionRun,
        params: dict[str, Any],
        deployment_id: UUID | str | None,
    ) -> str | None:
        if self.pause == "before":
            await self.hold(view, dead, None)
        new_run_id = await super().start_continuation(view, dead, params, deployment_id)
        if self.pause == "after":
            await self.hold(view, dead, new_run_id)
        return new_run_id


async def main(options: dict[str, Any]) -> None:
    names = BlockNames.model_validate(options["blocks"])
    conns = await open_connections(names, ("discord", "ledger"))
    async with conns, get_client() as client:
        reconciler = PausingReconciler(
            conns,
            load_policy(options["policy"]),
            client,
            stale_after=timedelta(seconds=options["stale_after_seconds"]),
            pause=options["pause"],
            where=Path(options["dir"]),
        )
        await reconciler.run(datetime.now(UTC))


if __name__ == "__main__":
    asyncio.run(main(json.load(sys.stdin)))
