"""The Slack block: opt-in by name, saved by `remediation-blocks` from REMEDIATION_SLACK_*
variables as Discord's is, and a flow naming no chat channel at all refused."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from blocks import SlackBot
from blocks.names import SLACK_BLOCK, BlockNames
from blocks.setup import _variables_help, block_name, main, setup_blocks, values_from_env
from core.errors import ConfigError

TOKEN = "xoxb-slack-block-test-7f3a"
ENV = {
    "REMEDIATION_SLACK_BOT_TOKEN": TOKEN,
    "REMEDIATION_SLACK_CHANNEL_ID": "C0APPROVALS",
    "REMEDIATION_SLACK_APPROVER_USER_IDS": "U01ALICE, U02BOB",
    "REMEDIATION_SLACK_APPROVER_USERGROUP_IDS": "S01ONCALL",
    "REMEDIATION_SLACK_ALLOW_ANY_CHANNEL_MEMBER": "true",
    "REMEDIATION_SLACK_API_BASE_URL": "http://127.0.0.1:9/api/",
}


def test_slack_is_opt_in_and_discord_stays_the_default_channel() -> None:
    names = BlockNames()
    assert (names.discord, names.slack) == ("remediation-discord", None)
    assert BlockNames(discord=None, slack=SLACK_BLOCK).slack == "remediation-slack"
    assert BlockNames(slack=SLACK_BLOCK).discord == "remediation-discord"  # both


@pytest.mark.parametrize(
    "given", [{"discord": None}, {"discord": None, "slack": None}], ids=["default", "explicit"]
)
def test_naming_no_chat_channel_is_a_config_error_naming_both_fields(given: dict) -> None:
    with pytest.raises(ConfigError) as caught:
        BlockNames.model_validate(given)
    assert caught.value.field == "blocks.discord/blocks.slack"
    with pytest.raises(ConfigError):  # as a flow run's parameters arrive, too
        BlockNames.model_validate_json('{"discord": null}')


def test_every_variable_becomes_its_field() -> None:
    values = values_from_env("slack", ENV)
    assert values == {
        "bot_token": TOKEN,
        "channel_id": "C0APPROVALS",
        "approver_user_ids": ["U01ALICE", "U02BOB"],
        "approver_usergroup_ids": ["S01ONCALL"],
        "allow_any_channel_member": "true",
        "api_base_url": "http://127.0.0.1:9/api/",
    }
    bot = SlackBot.model_validate(values)
    assert bot.allow_any_channel_member is True
    assert bot.bot_token.get_secret_value() == TOKEN


def test_the_block_is_saved_as_remediation_slack_unless_named_or_turned_off() -> None:
    assert block_name(BlockNames(), "slack") == SLACK_BLOCK
    assert block_name(BlockNames(slack="ops-slack"), "slack") == "ops-slack"
    assert block_name(BlockNames(slack=None), "slack") is None  # set to None on purpose
    assert block_name(BlockNames(), "discord") == "remediation-discord"


async def test_a_dry_run_validates_and_shows_the_block_with_its_token_masked() -> None:
    report = await setup_blocks(ENV, BlockNames(), only=["slack"], dry_run=True)
    [line] = report
    assert line.startswith(f"would save SlackBot {SLACK_BLOCK!r}: bot_token=**********")
    assert "channel_id=C0APPROVALS" in line and "approver_usergroup_ids=['S01ONCALL']" in line
    assert TOKEN not in line


async def test_without_slack_variables_it_is_skipped() -> None:
    report = await setup_blocks({}, BlockNames(), only=["slack"], dry_run=True)
    assert report == ["skipped slack: no REMEDIATION_SLACK_* variable set"]


def test_a_missing_channel_names_its_variable(capsys: pytest.CaptureFixture[str]) -> None:
    env = {"REMEDIATION_SLACK_BOT_TOKEN": TOKEN}
    assert main(["--only", "slack", "--dry-run"], env) == 2
    err = capsys.readouterr().err
    assert "REMEDIATION_SLACK_CHANNEL_ID" in err and TOKEN not in err


def test_help_lists_every_slack_variable_and_the_token_as_a_secret() -> None:
    text = _variables_help()
    assert f"SlackBot, saved as {SLACK_BLOCK!r}" in text
    for field in SlackBot.model_fields:
        assert f"REMEDIATION_SLACK_{field.upper()}" in text
    assert any(
        line.strip().startswith("REMEDIATION_SLACK_BOT_TOKEN") and "(secret)" in line
        for line in text.splitlines()
    )


async def test_saved_and_loaded_through_prefect(prefect_harness: str) -> None:
    names = BlockNames(slack="t25-slack")
    report = await setup_blocks(ENV, names, only=["slack"])
    assert report == [
        "created SlackBot 't25-slack' (allow_any_channel_member, api_base_url, "
        "approver_user_ids, approver_usergroup_ids, bot_token, channel_id)"
    ]
    bot = await SlackBot.aload("t25-slack")
    assert bot.approver_user_ids == ["U01ALICE", "U02BOB"]
    assert bot.bot_token.get_secret_value() == TOKEN
    # rotating the token changes only that field
    report = await setup_blocks(
        {"REMEDIATION_SLACK_BOT_TOKEN": "xoxb-rotated"}, names, only=["slack"]
    )
    assert report == ["updated SlackBot 't25-slack' (bot_token)"]
    bot = await SlackBot.aload("t25-slack")
    assert (bot.bot_token.get_secret_value(), bot.channel_id) == ("xoxb-rotated", "C0APPROVALS")


def test_the_block_builds_a_client_on_its_api_base() -> None:
    bot = SlackBot(bot_token=SecretStr(TOKEN), channel_id="C1", api_base_url="http://h/api/")
    client = bot.get_client()
    assert client.api_base == "http://h/api/"


def test_slack_alone_is_enough_chat_for_the_flows(capsys: pytest.CaptureFixture[str]) -> None:
    """With Slack's variables and not Discord's, the note names no missing chat channel;
    with neither, it asks for one of them."""
    assert main(["--dry-run"], ENV) == 0
    note = capsys.readouterr().err
    assert "the flows also need" in note and "discord" not in note  # (others still missing)
    assert main(["--dry-run"], {}) == 0
    assert "discord or slack" in capsys.readouterr().err
