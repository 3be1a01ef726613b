"""The demo's `--channel` wiring, without a full run (tests/e2e/test_demo_smoke.py runs the
Discord demo end to end; `--channel slack|both` was measured by hand, see the README):
what `remediation-blocks`, the deployments and the listener are given for each choice,
and the simulated operator reacting in the sandbox Slack (or in one of both channels)
on requests the real adapters posted, read back by the adapters and by the summary.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from pydantic import SecretStr

from blocks.discord import DiscordBot
from blocks.names import SLACK_BLOCK, BlockNames
from blocks.setup import main as remediation_blocks
from blocks.setup import values_from_env
from blocks.slack import SlackBot
from channels.channel_set import ChannelSet
from channels.discord import DiscordChannel
from channels.slack import SlackChannel
from core.approvers import Approvers
from core.messages import ApprovalCard, DecisionOutcome
from core.models import CheckName
from core.policy import Policy
from core.records import ApprovalRequest, Decision
from sandbox.__main__ import env_file_text, slack_lines
from sandbox.demo import Demo
from sandbox.demo_channels import ChatChoice
from sandbox.demo_chat import chat_lines
from sandbox.demo_operator import SimulatedOperator, boards
from sandbox.demo_profile import OPERATOR_PLAN, PROFILES
from sandbox.demo_stack import (
    BOT_TOKEN,
    CHANNEL_ID,
    GUILD_ID,
    SLACK_CHANNEL_ID,
    SandboxStack,
    discord_users,
    slack_server,
)
from sandbox.discord import DiscordServer
from tests.core.factories import action, issue, vet

REPO = Path(__file__).resolve().parents[2]
FAILED_UNIT = CheckName.FAILED_UNIT
SANDBOX_ENV = {"REMEDIATION_DISCORD_BOT_TOKEN": "t", "REMEDIATION_LOKI_URL": "http://loki"}


# --- what each choice gives remediation-blocks, the deployments and the listener ----------
def deployment_blocks(choice: ChatChoice, tmp_path: Path) -> list[dict[str, Any]]:
    demo = Demo(PROFILES["fast"], port=4999, workdir=tmp_path, say=lambda _: None, chat=choice)
    return [
        d["parameters"]["blocks"] for d in yaml.safe_load(demo._deployment_file())["deployments"]
    ]


def test_discord_alone_changes_nothing_the_demo_saves_or_deploys(tmp_path: Path) -> None:
    choice = ChatChoice()
    declared = yaml.safe_load((REPO / "prefect.yaml").read_text())["definitions"]["blocks"]
    assert choice.block_names() == {} and choice.blocks_args() == []
    assert choice.blocks_env({"env": SANDBOX_ENV, "slack": {"env": {"X": "y"}}}) == SANDBOX_ENV
    assert all(blocks == declared for blocks in deployment_blocks(choice, tmp_path))


def test_slack_alone_names_only_the_slack_block_in_every_deployment(tmp_path: Path) -> None:
    choice = ChatChoice("slack")
    for blocks in deployment_blocks(choice, tmp_path):
        names = BlockNames.model_validate(blocks)
        assert (names.discord, names.slack) == (None, SLACK_BLOCK)
        assert names.policy == "remediation-policy"


def test_both_names_the_discord_and_the_slack_block(tmp_path: Path) -> None:
    for blocks in deployment_blocks(ChatChoice("both"), tmp_path):
        names = BlockNames.model_validate(blocks)
        assert (names.discord, names.slack) == ("remediation-discord", SLACK_BLOCK)


def test_slack_alone_saves_the_slack_block_and_no_discord_one() -> None:
    """remediation-blocks (dry run) with the demo's arguments and variables for Slack."""
    slack = {"env": {"REMEDIATION_SLACK_BOT_TOKEN": "xoxb-1", "REMEDIATION_SLACK_CHANNEL_ID": "C1"}}
    choice = ChatChoice("slack")
    env = choice.blocks_env({"env": SANDBOX_ENV, "slack": slack})
    assert not [k for k in env if k.startswith("REMEDIATION_DISCORD_")]
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = remediation_blocks([*choice.blocks_args(), "--dry-run"], environ=env)
    assert code == 0, err.getvalue()
    assert f"would save SlackBot '{SLACK_BLOCK}'" in out.getvalue()
    assert "DiscordBot" not in out.getvalue()
    assert err.getvalue() == ""  # no note that the flows would need a Discord block


def test_an_unknown_channel_is_refused() -> None:
    with pytest.raises(ValueError, match="discord, slack, both"):
        ChatChoice("teams")


# --- the simulated operator in the sandbox Slack, and the summary's account -------------
@pytest.fixture
def stack() -> Iterator[SandboxStack]:
    stack = SandboxStack()
    stack.servers["slack"] = slack_server().start()
    try:
        yield stack
    finally:
        stack.stop()


def proposed(key: str, host: str, risk: str, check: CheckName, subject: str) -> Any:
    """An action the policy approved, on the issue it addresses (as the demo's are)."""
    param = {"restart_unit": "unit", "restart_process": "process", "free_disk": "mountpoint"}
    proposal = action(key, host, risk, **{param[key]: subject})
    [found] = vet([proposal], [issue(host=host, check=check, subject=subject)]).approved
    return found


def card(proposal: Any) -> ApprovalCard:
    return ApprovalCard(
        action=proposal,
        level=Policy().risk.level(proposal.risk),
        deadline=datetime.now(UTC) + timedelta(minutes=5),
        approvers=Approvers(),
        ui_url="http://127.0.0.1:4200/runs/flow-run/1",
    )


def request_of(proposal: Any, channel_id: str, message_id: str) -> ApprovalRequest:
    return ApprovalRequest(
        action_id=proposal.action_id,
        channel_id=channel_id,
        message_id=message_id,
        flow_run_id=None,
        risk=proposal.risk,
        deadline=datetime.now(UTC) + timedelta(minutes=5),
        policy_hash="p",
        requested_at=datetime.now(UTC),
    )


def sandbox_state(stack: SandboxStack, discord: DiscordServer | None = None) -> dict[str, Any]:
    """The parts of `python -m sandbox --state` the operator and the summary read."""
    state: dict[str, Any] = {
        "urls": {"slack": stack.slack.api_base},
        "slack": stack.describe_slack(),
        "env": {},
    }
    if discord is not None:
        state["urls"]["discord"] = discord.api_base
        state["discord"] = {
            "channel_id": CHANNEL_ID,
            "people": [{"name": u.username, "id": u.id} for u in discord_users()],
        }
    return state


@pytest.fixture
async def slack_channel(stack: SandboxStack) -> AsyncIterator[SlackChannel]:
    """The adapter built from the block the demo's variables describe."""
    env = ChatChoice("slack").blocks_env(sandbox_state(stack))
    channel = SlackChannel.from_block(SlackBot(**values_from_env("slack", env)))
    yield channel
    await channel.aclose()


async def operate(sandbox: dict[str, Any], choice: ChatChoice) -> list[str]:
    said: list[str] = []
    operator = SimulatedOperator(
        boards(sandbox, choice.channels), OPERATOR_PLAN, reacts_in=choice.reacts_in, scale=0.0,
        say=said.append,
    )  # fmt: skip
    async with httpx.AsyncClient(timeout=5.0) as http:
        await operator.step(http)  # sees the requests (and, at scale 0, reacts at once)
        await operator.step(http)
    return said


async def test_the_operator_reacts_in_slack_as_named_people_and_the_adapter_counts_them(
    stack: SandboxStack, slack_channel: SlackChannel
) -> None:
    postgres = proposed("restart_unit", "db-01", "low", FAILED_UNIT, "postgresql.service")
    java = proposed("restart_process", "web-01", "high", CheckName.CPU, "java")
    asked = {p.action_id: await slack_channel.ask(card(p)) for p in (postgres, java)}

    said = await operate(sandbox_state(stack), ChatChoice("slack"))

    assert "operator: carol reacted ❌ on restart_unit db-01" in said[0]
    postgres_ballot = await slack_channel.read_ballot(
        request_of(postgres, SLACK_CHANNEL_ID, asked[postgres.action_id].message_id)
    )
    assert [(r.username, r.emoji) for r in postgres_ballot.reactions] == [("carol", "❌")]
    java_ballot = await slack_channel.read_ballot(
        request_of(java, SLACK_CHANNEL_ID, asked[java.action_id].message_id)
    )
    voters = {r.username: r.user_id for r in java_ballot.reactions}
    assert set(voters) == {"alice", "mallory"}
    # approvers are the user group's members: alice is one, mallory is not
    assert await slack_channel.may_approve(voters["alice"], cache_seconds=60)
    assert not await slack_channel.may_approve(voters["mallory"], cache_seconds=60)

    lines = chat_lines(sandbox_state(stack), ("slack",))
    assert lines[0] == f"Slack #{SLACK_CHANNEL_ID}, as posted:"
    assert "    reactions: :white_check_mark: remediation-bot; :x: remediation-bot, carol" in lines
    assert lines[-1] == "  mentions that would notify someone: 0"


async def test_with_both_the_operator_reacts_in_one_and_both_requests_show_the_decision(
    stack: SandboxStack, slack_channel: SlackChannel
) -> None:
    discord_server = DiscordServer(discord_users(), guild_id=GUILD_ID, channel_ids=[CHANNEL_ID])
    discord_server.start()
    discord = DiscordChannel.from_block(
        DiscordBot(
            bot_token=SecretStr(BOT_TOKEN),
            approvals_channel_id=CHANNEL_ID,
            guild_id=GUILD_ID,
            api_base_url=discord_server.api_base,
        )
    )
    both = ChannelSet([discord, slack_channel])
    try:
        nginx = proposed(
            "restart_unit", "web-02", "low", FAILED_UNIT, "nginx.service"
        )  # reacted to in Slack
        disk = proposed("free_disk", "db-01", "low", CheckName.DISK, "/var")
        asked = {p.action_id: await both.ask(card(p)) for p in (nginx, disk)}
        sandbox = sandbox_state(stack, discord_server)

        said = await operate(sandbox, ChatChoice("both"))

        assert sorted(s.split(" — ")[0] for s in said) == [
            "operator: alice reacted ✅ in Slack on restart_unit web-02",
            "operator: bob reacted ✅ in Discord on free_disk db-01",
        ]
        nginx_request = request_of(nginx, both.channel_id, asked[nginx.action_id].message_id)
        ballot = await both.read_ballot(nginx_request)
        assert [(r.username, r.emoji) for r in ballot.reactions] == [("alice (Slack)", "✅")]

        decision = Decision(
            action_id=nginx.action_id,
            decision="approve",
            decider="alice (Slack)",
            via="chat",
            intended_at=datetime.now(UTC),
        )
        await both.update_request(nginx_request, DecisionOutcome(decision=decision))

        lines = chat_lines(sandbox, ("discord", "slack"))
        edited = [line for line in lines if line.startswith("    edited to:")]
        assert len(edited) == 2 and all("alice (Slack)" in line for line in edited), lines
        assert lines.count("  mentions that would notify someone: 0") == 2
    finally:
        await discord.aclose()
        discord_server.stop()


def test_the_sandbox_env_file_holds_slacks_variables_for_a_valid_slack_block(
    stack: SandboxStack,
) -> None:
    """`python -m sandbox --env-file`: every block's exports, then Slack's, which
    `remediation-blocks` reads into a SlackBot pointing at the sandbox Slack."""
    info = {"env": {"REMEDIATION_LOKI_URL": "http://loki"}, "slack": stack.describe_slack()}
    exported = dict(
        line.removeprefix("export ").split("=", 1)
        for line in env_file_text(info).splitlines()
        if line.startswith("export ")
    )
    bot = SlackBot(**values_from_env("slack", exported))
    assert (bot.channel_id, bot.api_base_url) == (SLACK_CHANNEL_ID, stack.slack.api_base)
    assert bot.approver_usergroup_ids == [stack.describe_slack()["approvers_usergroup_id"]]
    said = "\n".join(slack_lines(info["slack"]))
    assert f'{{"discord": null, "slack": "{SLACK_BLOCK}"}}' in said
