"""The approval listener against the sandbox Discord and real paused `remediate_action` runs.

Every test drives real action runs (a scripted AWX job, template 30) and asserts on what
the sandbox servers received, on Prefect flow-run states and on ledger rows.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import subprocess
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import StateType
from pydantic import SecretStr

from blocks import DiscordBot
from channels.channel_set import decode_ids
from clients.prefect_runs import PrefectRuns
from core.analysis import ModelAction
from core.models import CheckName, Issue, Risk, Severity
from core.policy import RiskRegister, load_policy, policy_hash
from core.records import ActionRecord, Decision
from core.settings import ListenerSettings
from core.vetting import ProposedAction, vet_actions
from flows.approval_listener import PollStats, approval_listener, run_listener
from flows.remediate_action import remediate_action
from sandbox.discord import SandboxUser
from tasks.approvals import ApprovalPoller
from tasks.connections import open_connections
from tests.fixtures.chat import ChatDriver, DiscordDriver, chat_stack
from tests.fixtures.loki_discord import (
    BOT_TOKEN,
    CHANNEL_ID,
    GUILD_ID,
)
from tests.fixtures.serve import DEPLOYMENT, ServedDeployment
from tests.fixtures.slack import CHANNEL_ID as SLACK_CHANNEL_ID
from tests.fixtures.slack import SlackDriver, slack_names
from tests.fixtures.stack import FAST_POLICY, FAST_SETTINGS, Stack
from tests.flows.helpers import eventually

SCRIPTED = 30
SETTINGS = {**FAST_SETTINGS, "settle_seconds": 0}
ROOT = Path(__file__).resolve().parents[2]


def register(deadline: int) -> dict[str, Any]:
    """The default risk register with every deadline set to `deadline` seconds."""
    levels = RiskRegister().model_dump()
    return {name: {**level, "deadline_seconds": deadline} for name, level in levels.items()}


def policy(deadline: int = 600) -> dict[str, Any]:
    """FAST_POLICY with one catalog entry that runs the AWX sandbox's scripted job."""
    entry = {
        "key": "noop_check",
        "runner": "awx",
        "template_id": SCRIPTED,
        "description": "A scripted sandbox job that changes nothing.",
        "addresses": ["failed_unit"],
        "max_job_seconds": 60,
    }
    return {**FAST_POLICY, "catalog": [entry], "risk": register(deadline)}


def proposals(pol: dict[str, Any], *specs: tuple[str, str]) -> list[ProposedAction]:
    """One vetted action per (host, risk), as a cycle would propose them."""
    checked = load_policy(pol)
    now = datetime.now(UTC)
    issues = [
        Issue(
            host=host,
            check=CheckName.FAILED_UNIT,
            subject="nginx.service",
            severity=Severity.CRITICAL,
            value=1.0,
            labels={"instance": host, "name": "nginx.service"},
            observed_at=now,
            summary=f"nginx.service failed on {host}",
        )
        for host, _ in specs
    ]
    vetting = vet_actions(
        [ModelAction(catalog_key="noop_check", host=h, risk=Risk(r)) for h, r in specs],
        issues,
        policy=checked,
        policy_hash=policy_hash(checked),
        history={},
        pending_approvals=0,
        cycle_id=f"cycle-{uuid.uuid4().hex[:8]}",
        now=now,
    )
    assert not vetting.rejected, vetting.rejected
    return vetting.approved


class Actions:
    """`remediate_action` runs started as asyncio tasks (each its own flow run)."""

    def __init__(self, stack: Stack, pol: dict[str, Any]) -> None:
        self.stack, self.policy = stack, pol
        self.tasks: dict[str, asyncio.Task] = {}

    def start(self, *actions: ProposedAction) -> None:
        for a in actions:
            self.tasks[a.action_id] = asyncio.create_task(
                remediate_action(
                    action=a.model_dump(mode="json"),
                    policy=self.policy,
                    blocks=self.stack.names,
                    settings=SETTINGS,
                    return_state=True,
                )
            )

    async def record(self, a: ProposedAction) -> ActionRecord | None:
        async with self.stack.ledger() as ledger:
            return await ledger.actions.get_action(a.action_id)

    # How long a run may take to reach its pause: in-process, the flow's own steps.
    PAUSE_SECONDS = 90

    async def paused(self, *actions: ProposedAction, posted: bool = True) -> list[ActionRecord]:
        """Wait until each action's run is PAUSED with its request recorded."""
        records = []
        for a in actions:

            async def probe(a: ProposedAction = a) -> ActionRecord | None:
                r = await self.record(a)
                if r is None or r.request is None or r.request.flow_run_id is None:
                    return None
                if posted and r.request.message_id is None:
                    return None
                async with get_client() as client:
                    run = await client.read_flow_run(uuid.UUID(r.request.flow_run_id))
                return r if run.state and run.state.type == StateType.PAUSED else None

            records.append(
                await eventually(probe, timeout=self.PAUSE_SECONDS, what=f"{a.host} paused")
            )
        return records

    async def finished(self, *actions: ProposedAction, timeout: float = 120) -> list[Any]:
        """Each run's final state (all must have been started here)."""
        done = asyncio.gather(*(self.tasks[a.action_id] for a in actions))
        return await asyncio.wait_for(done, timeout=timeout)


class DeployedActions(Actions):
    """`remediate_action` runs of the served deployment, each top-level (Prefect suspends
    no subflow): the runs of a policy whose levels wait suspended."""

    # The served process starts a process per run first: three at once on a loaded
    # 2-core box took over 90 s to reach their suspend.
    PAUSE_SECONDS = 240

    def __init__(self, stack: Stack, pol: dict[str, Any], served: ServedDeployment) -> None:
        super().__init__(stack, pol)
        self.served, self.run_ids = served, {}

    async def start_runs(self, *actions: ProposedAction) -> None:
        await self.served.ready()
        async with PrefectRuns.open() as runs:
            for a in actions:
                run = await runs.run_deployment(
                    DEPLOYMENT,
                    {"action": a.model_dump(mode="json"), "policy": self.policy,
                     "blocks": self.stack.names.model_dump(), "settings": SETTINGS},
                    idempotency_key=f"t-{a.action_id}",
                    tags=[f"action:{a.action_id}"],
                    as_subflow=False,
                )  # fmt: skip
                self.run_ids[a.action_id] = str(run.id)

    async def finished(self, *actions: ProposedAction, timeout: float = 120) -> list[Any]:
        async def final() -> list[Any] | None:
            async with get_client() as client:
                states = [
                    (await client.read_flow_run(uuid.UUID(self.run_ids[a.action_id]))).state
                    for a in actions
                ]
            return states if all(s is not None and s.is_final() for s in states) else None

        return await eventually(final, timeout=timeout, interval=0.5, what="runs to end")


async def suspended_runs(*records: ActionRecord) -> bool:
    """Each record's run waits suspended (no process), not paused."""
    async with get_client() as client:
        for r in records:
            assert r.request is not None and r.request.flow_run_id is not None
            state = (await client.read_flow_run(uuid.UUID(r.request.flow_run_id))).state
            if state is None or state.name != "Suspended":
                return False
    return True


def waiting(pol: dict[str, Any], wait: str) -> dict[str, Any]:
    """The policy with every risk level waiting `wait` (pause or suspend)."""
    return {**pol, "risk": {n: {**level, "wait": wait} for n, level in pol["risk"].items()}}


class Background:
    """The listener loop as a background task that a test can kill and count polls of."""

    def __init__(
        self, stack: Stack, pol: dict[str, Any], poll_seconds: float = 0.5, **settings: Any
    ) -> None:
        self.stack, self.policy = stack, pol
        self.settings = ListenerSettings(poll_seconds=poll_seconds, **settings)
        self.polls: list[PollStats] = []
        self.stopping = False
        self.task: asyncio.Task | None = None

    async def _count(self, stats: PollStats) -> None:
        self.polls.append(stats)

    def start(self) -> Background:
        self.stopping = False
        self.task = asyncio.create_task(
            run_listener(
                self.stack.names,
                load_policy(self.policy),
                self.settings,
                stop=lambda: self.stopping,
                on_poll=self._count,
            )
        )
        return self

    async def kill(self) -> None:
        """Cancel the loop wherever it is, as SIGKILL would stop a process."""
        assert self.task is not None
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task

    async def stop(self) -> None:
        self.stopping = True
        assert self.task is not None
        await asyncio.wait_for(self.task, timeout=30)

    async def more_polls(self, n: int = 2) -> None:
        target = len(self.polls) + n
        await eventually(lambda: len(self.polls) >= target, timeout=60, what=f"{n} polls")

    async def __aenter__(self) -> Background:
        return self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


@pytest.fixture(params=["discord", "slack"])
def chat(request: pytest.FixtureRequest, stack: Stack) -> tuple[Stack, ChatDriver]:
    """The stack speaking only to one chat channel (each test runs for both), and that
    channel's sandbox driver."""
    return chat_stack(stack, request.param)


def message(stack: Stack, record: ActionRecord) -> Any:
    assert record.request is not None and record.request.message_id is not None
    return stack.discord.message(CHANNEL_ID, record.request.message_id)


def react(stack: Stack, record: ActionRecord, emoji: str, *users: str) -> None:
    for user in users:
        stack.discord.react(CHANNEL_ID, message(stack, record).id, emoji, user)


async def events(stack: Stack, action_id: str, name: str) -> list[dict[str, Any]]:
    async with stack.ledger() as ledger:
        return [
            e
            for e in await ledger.operations.audit_trail(action_id=action_id)
            if e["event"] == name
        ]


def completed(state: Any) -> bool:
    return state.type == StateType.COMPLETED


async def decision(stack: Stack, a: ProposedAction) -> Decision:
    async with stack.ledger() as ledger:
        record = await ledger.actions.get_action(a.action_id)
    assert record is not None and record.decision is not None
    return record.decision


# --- deciding --------------------------------------------------------------------------
async def test_an_approver_approves_and_the_action_runs(
    chat: tuple[Stack, ChatDriver],
) -> None:
    stack, channel = chat
    pol = policy()
    [a] = proposals(pol, ("web-02", "low"))
    runs = Actions(stack, pol)
    async with Background(stack, pol):
        runs.start(a)
        [record] = await runs.paused(a)
        channel.react(record, "✅", "alice")
        [state] = await runs.finished(a)
    assert completed(state) and (await state.result()).status == "finished"
    d = await decision(stack, a)
    assert (d.decision, d.decider, d.via) == ("approve", "alice", channel.name)
    assert d.applied_at is not None
    assert stack.awx.launches(SCRIPTED) == 1
    assert channel.request_text(record) == "✅ Approved by alice"
    assert len(await events(stack, a.action_id, "decision_announced")) == 1
    assert channel.pings() == []


async def test_reject_and_a_reject_beating_an_approval(chat: tuple[Stack, ChatDriver]) -> None:
    stack, channel = chat
    pol = policy()
    rejected, vetoed = proposals(pol, ("web-01", "low"), ("web-02", "low"))
    runs = Actions(stack, pol)
    runs.start(rejected, vetoed)
    first, second = await runs.paused(rejected, vetoed)
    channel.react(first, "❌", "carol")
    channel.react(second, "✅", "alice")  # both seen in the same poll: the ❌ wins
    channel.react(second, "❌", "bob")
    async with Background(stack, pol):
        states = await runs.finished(rejected, vetoed)
    assert all(completed(s) for s in states)
    assert [(await s.result()).status for s in states] == ["rejected", "rejected"]
    assert (await decision(stack, rejected)).decider == "carol"
    d = await decision(stack, vetoed)
    assert (d.decision, d.decider, d.via) == ("reject", "bob", channel.name)
    assert stack.awx.launches(SCRIPTED) == 0
    assert channel.request_text(second) == "❌ Rejected by bob"
    assert channel.pings() == []


async def test_bots_strangers_and_a_removed_approval_do_not_count_toward_the_quorum(
    chat: tuple[Stack, ChatDriver],
) -> None:
    stack, channel = chat
    pol = policy()
    [a] = proposals(pol, ("db-01", "high"))
    runs = Actions(stack, pol)
    async with Background(stack, pol) as listener:
        runs.start(a)
        [record] = await runs.paused(a)
        assert channel.reactions(record) == {"✅", "❌"}
        # The bot's own ✅ and ❌ are there already; another bot (with the approver role
        # or in the approvers' group), a member who is not an approver and one who is not
        # in the channel's workspace or guild approve; alice approves once.
        channel.react(record, "✅", "helper-bot", "mallory", "dave", "alice")

        async def seen() -> bool:
            async with stack.ledger() as ledger:
                return len(await ledger.actions.votes(a.action_id)) == 3

        await eventually(seen, what="votes recorded")
        await listener.more_polls(2)
        assert (await runs.record(a)).decision is None  # alice alone is not a quorum
        channel.unreact(record, "✅", "alice")

        async def removed() -> bool:
            async with stack.ledger() as ledger:
                return any(v.removed_at for v in await ledger.actions.votes(a.action_id))

        await eventually(removed, what="alice's removal recorded")
        channel.react(record, "✅", "bob")
        await listener.more_polls(2)
        assert (await runs.record(a)).decision is None  # bob alone: alice's ✅ is gone
        channel.react(record, "✅", "carol")
        [state] = await runs.finished(a)
    assert completed(state) and (await state.result()).status == "finished"
    d = await decision(stack, a)
    assert (d.decision, d.decider) == ("approve", "bob, carol")
    async with stack.ledger() as ledger:
        votes = {v.username: v for v in await ledger.actions.votes(a.action_id)}
    assert set(votes) == {"mallory", "dave", "alice", "bob", "carol"}  # bots never recorded
    assert votes["alice"].removed_at is not None
    assert not channel.bot_ids & {v.user_id for v in votes.values()}
    assert stack.awx.launches(SCRIPTED) == 1
    assert channel.pings() == []


REMINDER_FRACTION = 0.6


async def test_deadline_defaults_per_risk_level_and_one_reminder_each(
    chat: tuple[Stack, ChatDriver],
) -> None:
    stack, channel = chat
    pol = policy(deadline=10)
    unseen, low, medium, high = proposals(
        pol, ("web-01", "low"), ("web-02", "low"), ("db-01", "medium"), ("app-01", "high")
    )
    runs = Actions(stack, pol)
    # The first request cannot be posted to the channel (the post fails; the run still
    # pauses).
    channel.fail_next_request()
    runs.start(unseen)
    [unseen_record] = await runs.paused(unseen, posted=False)
    assert unseen_record.request.message_id is None
    runs.start(low, medium, high)
    records = await runs.paused(low, medium, high)
    # The reminder is due in the last 60 % of the 10 s window: wide enough that a poll
    # stalled by the shared SQLite test server (a locked database costs a 2 s back-off)
    # still lands in it.
    async with Background(stack, pol, reminder_fraction=REMINDER_FRACTION):
        states = await runs.finished(unseen, low, medium, high)
    assert all(completed(s) for s in states), [s.type for s in states]
    statuses = [(await s.result()).status for s in states]
    assert statuses == ["rejected", "finished", "finished", "rejected"]
    for a, expected in [
        (unseen, "reject"),
        (low, "approve"),
        (medium, "approve"),
        (high, "reject"),
    ]:
        d = await decision(stack, a)
        assert (d.decision, d.via, d.decider) == (expected, "deadline", "deadline default")
    assert f"never reached {channel.title}" in (await decision(stack, unseen)).comment
    assert stack.awx.launches(SCRIPTED) == 2
    texts = [channel.request_text(r) for r in records]
    assert texts == [
        "⏰ Deadline passed with no decision: ran by deadline default",
        "⏰ Deadline passed with no decision: ran by deadline default",
        "⏰ Deadline passed with no decision: will not run",
    ]
    assert sorted(channel.reminder_titles()) == sorted(
        f"⏳ Reminder: noop_check on {a.host} awaits a decision" for a in (low, medium, high)
    )
    assert channel.pings() == []
    for a in (low, medium, high):
        r = await runs.record(a)
        window = (r.request.deadline - r.request.requested_at).total_seconds()
        left = (r.request.deadline - r.request.reminder_sent_at).total_seconds()
        assert 0 < left <= REMINDER_FRACTION * window
    assert (await runs.record(unseen)).request.reminder_sent_at is None


def in_channel(record: ActionRecord, name: str) -> ActionRecord:
    """The record as one channel sees it: its own request of the several asked."""
    assert record.request is not None
    return record.model_copy(update={"request": decode_ids(record.request)[name]})


async def test_both_channels_ask_each_action_once_and_one_decision_edits_both(
    stack: Stack,
) -> None:
    both = dataclasses.replace(stack, names=slack_names(stack.names, with_discord=True))
    discord, slack = DiscordDriver(stack.discord), SlackDriver(stack.slack)
    pol = policy()
    vetoed, approved = proposals(pol, ("web-01", "low"), ("web-02", "low"))
    runs = Actions(both, pol)
    runs.start(vetoed, approved)
    r_vetoed, r_approved = await runs.paused(vetoed, approved)
    for r in (r_vetoed, r_approved):
        assert set(decode_ids(r.request)) == {"discord", "slack"}  # asked in both, once
        assert discord.reactions(in_channel(r, "discord")) == {"✅", "❌"}
        assert slack.reactions(in_channel(r, "slack")) == {"✅", "❌"}
    discord.react(in_channel(r_vetoed, "discord"), "✅", "alice")
    slack.react(in_channel(r_vetoed, "slack"), "❌", "bob")  # ❌ in either beats ✅ in either
    slack.react(in_channel(r_approved, "slack"), "✅", "alice")
    discord.react(in_channel(r_approved, "discord"), "✅", "mallory")  # not an approver
    async with Background(both, pol):
        states = await runs.finished(vetoed, approved)
    assert [(await s.result()).status for s in states] == ["rejected", "finished"]
    d_vetoed, d_approved = await decision(stack, vetoed), await decision(stack, approved)
    assert (d_vetoed.decision, d_vetoed.decider, d_vetoed.via) == ("reject", "bob (Slack)", "chat")
    assert (d_approved.decision, d_approved.decider) == ("approve", "alice (Slack)")
    assert stack.awx.launches(SCRIPTED) == 1
    for r, text in [
        (r_vetoed, "❌ Rejected by bob (Slack)"),
        (r_approved, "✅ Approved by alice (Slack)"),
    ]:
        assert discord.request_text(in_channel(r, "discord")) == text
        assert slack.request_text(in_channel(r, "slack")) == text
        assert len(await events(stack, r.proposal.action_id, "decision_announced")) == 1
    # Everything was said in both: the requests, and beside each (Slack: in its thread)
    # the rejection and the result; Slack also replies each decision in its thread (its
    # edit notifies no one).
    in_slack = stack.slack.messages(SLACK_CHANNEL_ID)
    assert len(stack.discord.messages(CHANNEL_ID)) == 4
    assert len(in_slack) == 4 + 2
    replies = [m for m in in_slack if m["thread_ts"] and m["thread_ts"] != m["ts"]]
    assert len(replies) == 4  # the rejection, the result and the two decisions
    texts = [m["text"] for m in replies]
    assert (
        texts.count("✅ Approved by alice (Slack)")
        == texts.count("❌ Rejected by bob (Slack)")
        == 1
    )
    assert {m["thread_ts"] for m in replies} == {
        decode_ids(r.request)["slack"].message_id for r in (r_vetoed, r_approved)
    }
    assert slack.pings() == []


# --- restarts and races ------------------------------------------------------------------
# Both wait modes with Discord, and Slack with the default (pause): the channel and the
# wait mode are independent parts of the path (a suspended run is voted on as a paused one).
@pytest.mark.parametrize(
    ("chat_name", "wait"), [("discord", "pause"), ("discord", "suspend"), ("slack", "pause")]
)
async def test_listener_killed_and_restarted_loses_and_doubles_nothing(
    stack: Stack, chat_name: str, wait: str, prefect_harness: str, tmp_path: Path
) -> None:
    stack, channel = chat_stack(stack, chat_name)
    served = None
    if wait == "suspend":  # suspended runs are deployment runs: a worker re-runs them
        served = ServedDeployment(prefect_harness, tmp_path / "serve.log")
    try:
        await _listener_killed_and_restarted(stack, channel, wait, served)
    finally:
        if served is not None:
            await served.stop()


async def _listener_killed_and_restarted(
    stack: Stack, channel: ChatDriver, wait: str, served: ServedDeployment | None
) -> None:
    pol = waiting(policy(), wait)
    between, intended, resumed = proposals(
        pol, ("web-01", "low"), ("web-02", "low"), ("db-01", "medium")
    )
    first = Background(stack, pol).start()
    if served is not None:
        runs: Actions = DeployedActions(stack, pol, served)
        await runs.start_runs(between, intended, resumed)
    else:
        runs = Actions(stack, pol)
        runs.start(between, intended, resumed)
    r_between, r_intended, r_resumed = await runs.paused(between, intended, resumed)
    assert await suspended_runs(r_between, r_intended, r_resumed) is (wait == "suspend")
    await first.more_polls(1)
    await first.kill()  # between polls, or in the middle of one
    # While no listener runs: a vote arrives; and the ledger is left as a listener killed
    # after recording an intent would leave it (and one killed right after resuming).
    channel.react(r_between, "✅", "alice")
    channel.react(r_intended, "✅", "bob")
    channel.react(r_resumed, "✅", "carol")
    now = datetime.now(UTC)
    async with stack.ledger() as ledger:
        for a, who in [(intended, "bob"), (resumed, "carol")]:
            await ledger.actions.record_decision_intent(
                Decision(
                    action_id=a.action_id,
                    decision="approve",
                    decider=who,
                    via=channel.name,
                    intended_at=now,
                )
            )
    async with get_client() as client:
        answer = await client.resume_flow_run(
            uuid.UUID(r_resumed.request.flow_run_id), run_input={"decision": "approve"}
        )
    assert answer.status.value == "ACCEPT"
    channel.react(r_intended, "✅", "alice")  # arrives after the intent: changes nothing
    async with Background(stack, pol):
        states = await runs.finished(between, intended, resumed)
    assert all(completed(s) for s in states)
    assert stack.awx.launches(SCRIPTED) == 3
    expected = [(between, "alice", r_between), (intended, "bob", r_intended)]
    expected.append((resumed, "carol", r_resumed))
    for a, who, r in expected:
        d = await decision(stack, a)
        assert (d.decision, d.decider, d.via) == ("approve", who, channel.name)
        assert d.applied_at is not None
        assert channel.request_text(r) == f"✅ Approved by {who}"
        assert len(await events(stack, a.action_id, "decision_announced")) == 1
        assert len(await events(stack, a.action_id, "decision")) == 1  # the run's own record


async def test_ui_resume_racing_the_listener_records_what_prefect_applied(stack: Stack) -> None:
    pol = policy()
    [a] = proposals(pol, ("web-02", "low"))
    runs = Actions(stack, pol)
    async with Background(stack, pol):
        runs.start(a)
        [record] = await runs.paused(a)
        # The listener's next read of the ❌ reactions is held for 4 s; alice's ❌ is in it.
        reject_path = r"/api/v10/channels/.*/reactions/%E2%9D%8C"
        held = len(stack.discord.received("GET", reject_path))
        stack.discord.inject(method="GET", path=reject_path, mode="delay", delay=4.0)
        react(stack, record, "❌", "alice")
        await eventually(
            lambda: len(stack.discord.received("GET", reject_path)) > held,
            what="the listener reading reactions",
        )
        async with get_client() as client:  # meanwhile someone approves in the Prefect UI
            answer = await client.resume_flow_run(
                uuid.UUID(record.request.flow_run_id),
                run_input={"decision": "approve", "comment": "looks fine"},
            )
        assert answer.status.value == "ACCEPT"
        [state] = await runs.finished(a)
        await eventually(
            lambda: events(stack, a.action_id, "resume_aborted"), what="the listener's ABORT"
        )
    assert completed(state) and (await state.result()).status == "finished"
    d = await decision(stack, a)
    assert (d.decision, d.decider, d.via, d.comment) == (
        "approve",
        "Prefect UI",
        "ui",
        "looks fine",
    )
    assert stack.awx.launches(SCRIPTED) == 1
    assert message(stack, record).content == "✅ Approved — decided in the Prefect UI — looks fine"


async def test_a_refused_ui_approval_racing_a_veto_leaves_the_veto(stack: Stack) -> None:
    pol = policy()
    [a] = proposals(pol, ("db-01", "high"))
    runs = Actions(stack, pol)
    async with Background(stack, pol):
        runs.start(a)
        [record] = await runs.paused(a)
        reject_path = r"/api/v10/channels/.*/reactions/%E2%9D%8C"
        held = len(stack.discord.received("GET", reject_path))
        stack.discord.inject(method="GET", path=reject_path, mode="delay", delay=4.0)
        react(stack, record, "❌", "alice")
        await eventually(
            lambda: len(stack.discord.received("GET", reject_path)) > held,
            what="the listener reading reactions",
        )
        async with get_client() as client:  # a UI approve, which high risk does not accept
            answer = await client.resume_flow_run(
                uuid.UUID(record.request.flow_run_id), run_input={"decision": "approve"}
            )
        assert answer.status.value == "ACCEPT"
        [state] = await runs.finished(a)
    assert completed(state) and (await state.result()).status == "rejected"
    assert await events(stack, a.action_id, "ui_approve_refused")
    d = await decision(stack, a)
    assert (d.decision, d.decider, d.via) == ("reject", "alice", "discord")
    assert stack.awx.launches(SCRIPTED) == 0
    assert message(stack, record).content == "❌ Rejected by alice"


async def test_after_a_restart_past_the_deadline_only_earlier_votes_count(stack: Stack) -> None:
    pol = policy(deadline=8)
    [a] = proposals(pol, ("db-01", "high"))
    runs = Actions(stack, pol)
    first = Background(stack, pol).start()
    runs.start(a)
    [record] = await runs.paused(a)
    react(stack, record, "✅", "alice")

    async def recorded() -> bool:
        async with stack.ledger() as ledger:
            return len(await ledger.actions.votes(a.action_id)) == 1

    await eventually(recorded, what="alice's vote recorded")
    await first.kill()
    deadline = record.request.deadline
    await eventually(lambda: datetime.now(UTC) > deadline, what="the deadline")
    react(stack, record, "✅", "bob")  # a second approver, but only after the deadline
    async with Background(stack, pol):
        [state] = await runs.finished(a)
    assert completed(state) and (await state.result()).status == "rejected"
    d = await decision(stack, a)
    assert (d.decision, d.via) == ("reject", "deadline")
    async with stack.ledger() as ledger:
        votes = {v.username: v for v in await ledger.actions.votes(a.action_id)}
    assert votes["alice"].first_seen_at < deadline < votes["bob"].first_seen_at
    assert stack.awx.launches(SCRIPTED) == 0
    assert message(stack, record).content == "⏰ Deadline passed with no decision: will not run"


async def test_five_paused_actions_approved_in_one_poll_all_complete(stack: Stack) -> None:
    pol = policy()
    hosts = ["web-01", "web-02", "db-01", "app-01", "app-02"]
    actions = proposals(pol, *[(h, "low") for h in hosts])
    runs = Actions(stack, pol)
    runs.start(*actions)
    records = await runs.paused(*actions)
    for r in records:
        react(stack, r, "✅", "alice")
    polls: list[PollStats] = []

    async def count(stats: PollStats) -> None:
        polls.append(stats)

    report = await run_listener(
        stack.names, load_policy(pol), ListenerSettings(), stop=lambda: True, on_poll=count
    )
    assert report.polls == 1 and polls[0].resumed == 5 and polls[0].errors == []
    states = await runs.finished(*actions, timeout=180)
    assert all(completed(s) for s in states)
    assert [(await s.result()).status for s in states] == ["finished"] * 5
    assert stack.awx.launches(SCRIPTED) == 5
    assert {(await decision(stack, a)).decider for a in actions} == {"alice"}


async def test_every_page_of_reactions_is_read(stack: Stack) -> None:
    pol = policy()
    [a] = proposals(pol, ("web-02", "low"))
    runs = Actions(stack, pol)
    runs.start(a)
    [record] = await runs.paused(a)
    # 120 members without the approver role react first; ids below alice's put her ✅ on
    # the second page (Discord pages reactors by ascending id, 100 a page).
    for i in range(120):
        stack.discord.add_user(SandboxUser(str(1300000000000000500 + i), f"member-{i}"))
        react(stack, record, "✅", f"member-{i}")
    react(stack, record, "✅", "alice")
    async with Background(stack, pol):
        [state] = await runs.finished(a)
    assert completed(state)
    assert (await decision(stack, a)).decider == "alice"
    async with stack.ledger() as ledger:
        assert len(await ledger.actions.votes(a.action_id)) == 121
    pages = stack.discord.received("GET", r"/api/v10/channels/.*/reactions/%E2%9C%85")
    assert any(p.arg("after") for p in pages)


async def test_who_is_allowed_follows_the_discord_block(stack: Stack) -> None:
    async def allowed(**block: Any) -> dict[str, bool]:
        await DiscordBot(
            bot_token=SecretStr(BOT_TOKEN),
            approvals_channel_id=CHANNEL_ID,
            guild_id=GUILD_ID,
            api_base_url=stack.discord.api_base,
            **block,
        ).asave(stack.names.discord, overwrite=True)
        conns = await open_connections(stack.names, ("discord", "ledger"))
        async with conns, get_client() as client:
            listener = ApprovalPoller(
                conns, load_policy(None), ListenerSettings(), PrefectRuns(client)
            )
            users = {u: stack.discord.user(u).id for u in ("alice", "mallory", "dave")}
            return {u: await listener.allowed(uid) for u, uid in users.items()}

    mallory = stack.discord.user("mallory").id
    assert await allowed() == {"alice": False, "mallory": False, "dave": False}
    assert await allowed(allow_any_channel_member=True) == {
        "alice": True,
        "mallory": True,
        "dave": False,  # not a member of the guild
    }
    assert await allowed(approver_user_ids=[mallory], allow_any_channel_member=True) == {
        "alice": False,
        "mallory": True,
        "dave": False,
    }


# --- how it runs -------------------------------------------------------------------------
async def test_the_flow_runs_for_a_bounded_time_and_returns(stack: Stack) -> None:
    state = await approval_listener(
        policy=policy(),
        blocks=stack.names,
        settings=ListenerSettings(poll_seconds=0.5, run_seconds=2),
        return_state=True,
    )
    assert completed(state)
    report = await state.result()
    assert 2 <= report.polls <= 4 and report.errors == 0
    async with stack.ledger() as ledger:
        assert await ledger.operations.last_heartbeat("listener") is not None


def _command(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).with_name("remediation-listener")
    return subprocess.run(
        [str(exe), *args], capture_output=True, text=True, timeout=120, env=env, cwd=ROOT
    )


async def test_console_command_runs_the_same_loop_for_a_bounded_time(
    stack: Stack, prefect_harness: str
) -> None:
    helping = asyncio.create_task(asyncio.to_thread(_command, "--help"))
    pol = policy()
    [a] = proposals(pol, ("web-02", "low"))
    runs = Actions(stack, pol)
    runs.start(a)
    [record] = await runs.paused(a)
    help_run = await helping
    assert help_run.returncode == 0
    assert "--run-seconds" in help_run.stdout and "--poll-seconds" in help_run.stdout
    react(stack, record, "✅", "alice")
    policy_file = Path(os.environ.get("TMPDIR", "/tmp")) / f"listener-{uuid.uuid4().hex}.json"
    policy_file.write_text(json.dumps(pol))
    env = {**os.environ, "PREFECT_API_URL": prefect_harness}
    try:
        done = await asyncio.to_thread(
            _command,
            "--poll-seconds",
            "0.5",
            "--run-seconds",
            "2",
            "--policy",
            str(policy_file),
            "--blocks",
            stack.names.model_dump_json(),
            env=env,
        )
    finally:
        policy_file.unlink()
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert 2 <= report["polls"] <= 4 and report["resumed"] == 1
    [state] = await runs.finished(a)
    assert completed(state)
    assert (await decision(stack, a)).decider == "alice"


async def test_listener_reconciles_a_dead_action_run(stack: Stack) -> None:
    """The listener runs the reconciler: a paused action whose process died expires."""
    from prefect.states import Crashed

    from tests.flows.actions import paused_runs, policy_with, proposal
    from tests.flows.helpers import listener

    policy = policy_with()
    action = proposal(policy)
    run = asyncio.create_task(
        remediate_action(
            action=action.model_dump(mode="json"),
            policy=policy,
            blocks=stack.names,
            settings=FAST_SETTINGS,
        )
    )
    [paused] = await eventually(lambda: paused_runs(action.action_id))
    run.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await run
    async with get_client() as client:
        await client.set_flow_run_state(paused.id, Crashed(message="killed (test)"), force=True)

    async def expired() -> bool:
        async with stack.ledger() as ledger:
            record = await ledger.actions.get_action(action.action_id)
        return record.status.value == "expired"

    async with listener(stack):
        await eventually(expired, what="the reconciler to expire the action")
    assert stack.awx.launches(30) == 0
