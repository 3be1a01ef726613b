"""Following one triggered cycle to the end of its last action, printing as it goes."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import TYPE_CHECKING, Any

import httpx

from clients.ledger import Ledger
from core.checks import build_queries
from core.policy import load_policy
from sandbox.demo_chat import chat_lines
from sandbox.demo_operator import SimulatedOperator, boards
from sandbox.demo_profile import Reaction
from sandbox.demo_report import (
    FINAL_RUN_STATES,
    ActionView,
    DemoResult,
    announce,
    cycle_report,
    read_views,
    summary_text,
)

if TYPE_CHECKING:
    from sandbox.demo import Demo


def listener_alive(ledger_url: str) -> bool:
    """Has the listener written its heartbeat to the ledger (it polled at least once)?"""

    async def beat() -> bool:
        ledger = Ledger(ledger_url)
        try:
            return await ledger.operations.last_heartbeat("listener") is not None
        finally:
            await ledger.aclose()

    return asyncio.run(beat())


def rule_hits(prometheus_url: str, policy: dict[str, Any], checks: list[str]) -> dict[str, set]:
    """Hosts that each check's rule query (as the cycle sends it) answers with now."""
    queries = build_queries(load_policy(policy).detection)
    out: dict[str, set[str]] = {}
    for check in checks:
        answer = httpx.get(
            f"{prometheus_url}/api/v1/query", params={"query": queries[check]}, timeout=5
        )
        answer.raise_for_status()
        out[check] = {r["metric"].get("instance", "") for r in answer.json()["data"]["result"]}
    return out


class Follower:
    """Polls Prefect and the ledger every half second until every action has ended."""

    def __init__(self, demo: Demo, plan: dict[tuple[str, str], tuple[Reaction, ...]] | None):
        self.demo, self.plan = demo, plan
        self.views: dict[str, ActionView] = {}
        self.cycle: dict[str, Any] | None = None
        self.cycle_id = ""
        self.cycle_state = ""
        self.shown_links: set[str] = set()

    async def _state(self, http: httpx.AsyncClient, run_id: str) -> str:
        answer = await http.get(f"/flow_runs/{run_id}")
        answer.raise_for_status()
        state = answer.json().get("state") or {}
        return state.get("type") or "PENDING"

    async def follow(self, cycle_id: str) -> None:
        demo, self.cycle_id = self.demo, cycle_id
        operator = None
        if self.plan is not None:
            operator = asyncio.create_task(
                SimulatedOperator(
                    boards(demo.sandbox, demo.chat.channels),
                    self.plan,
                    reacts_in=demo.chat.reacts_in,
                    scale=demo.profile.reaction_scale,
                    say=demo.say,
                ).run()
            )
        ledger = Ledger(demo.ledger_url)
        deadline = time.monotonic() + demo.profile.budget_seconds
        try:
            async with httpx.AsyncClient(base_url=demo.api, timeout=10.0) as http:
                while not await self._poll(http, ledger):
                    if time.monotonic() > deadline:
                        raise RuntimeError(self._stuck())
                    await asyncio.sleep(0.5)
        finally:
            if operator is not None:
                operator.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await operator
            await ledger.aclose()

    async def _poll(self, http: httpx.AsyncClient, ledger: Ledger) -> bool:
        try:
            return await self._step(http, ledger)
        except httpx.HTTPStatusError as exc:
            if exc.response.status_code in (429, 503):  # a busy server: poll again later
                return False
            raise
        except httpx.TransportError:
            return False

    async def _step(self, http: httpx.AsyncClient, ledger: Ledger) -> bool:
        """One poll; True when the cycle and every action it dispatched have ended."""
        state = await self._state(http, self.cycle_id)
        if state != self.cycle_state:
            self.cycle_state = state
            self.demo.say(f"cycle run: {state}")
        await read_views(ledger, self.cycle_id, self.views, self.demo.chat.title)
        announce(self.views, self.demo.say)
        for view in self.views.values():
            run_id = view.record.flow_run_id or (
                view.record.request.flow_run_id if view.record.request else None
            )
            if run_id:
                view.run_state = await self._state(http, run_id)
                self._offer_ui(view, run_id)
        if state not in FINAL_RUN_STATES:
            return False
        if state != "COMPLETED":
            raise RuntimeError(f"the cycle run ended {state}; see {self.demo.workdir}/worker.log")
        if self.cycle is None:
            self.cycle = await cycle_report(ledger, self.cycle_id)
            if self.cycle is not None:
                self.demo.say(
                    f"cycle outcome: {self.cycle.get('outcome')}; "
                    f"{len(self.cycle.get('new_issues') or [])} new issue(s)"
                )
        return self.cycle is not None and all(v.finished for v in self.views.values())

    def _offer_ui(self, view: ActionView, run_id: str) -> None:
        if self.plan is not None or run_id in self.shown_links or view.run_state != "PAUSED":
            return
        self.shown_links.add(run_id)
        high = "" if view.p.risk.value != "high" else " (high risk: the UI can only reject)"
        self.demo.say(
            f"{view.label}: decide in the Prefect UI{high}: {self.demo.ui}/v2/runs/flow-run/"
            f"{run_id}  (⋮ menu → Resume → approve or reject)"
        )

    def _stuck(self) -> str:
        pending = [
            f"{v.label}: {v.record.status.value}, run {v.run_state}"
            for v in self.views.values()
            if not v.finished
        ]
        return (
            f"not finished within {self.demo.profile.budget_seconds:g} s: cycle "
            f"{self.cycle_state}; " + ("; ".join(pending) or "no actions yet")
        )

    def result(self, stages: list[tuple[str, float]]) -> DemoResult:
        views = list(self.views.values())
        links = [("cycle", f"{self.demo.ui}/v2/runs/flow-run/{self.cycle_id}")]
        for v in views:
            run_id = v.record.flow_run_id or (
                v.record.request.flow_run_id if v.record.request else ""
            )
            links.append((v.label, f"{self.demo.ui}/v2/runs/flow-run/{run_id}"))
        chat = self.demo.chat
        # Discord alone keeps its summary as it was; Slack shows what it was sent
        posted = [] if chat.is_default else chat_lines(self.demo.sandbox, chat.channels)
        return DemoResult(
            views=views,
            stages=stages,
            cycle=self.cycle,
            links=links,
            summary=summary_text(views, stages, self.cycle, links, posted),
            chat=posted,
        )
