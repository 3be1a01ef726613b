"""Slack bot block: the channel requests are posted in, and who may approve there."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import Field, SecretStr

from blocks.base import RemediationBlock, reveal

if TYPE_CHECKING:  # slack_sdk and aiohttp are imported only where Slack is used
    from clients.slack import SlackClient

SLACK_API = "https://slack.com/api/"


class SlackBot(RemediationBlock):
    """The Slack app's bot that posts approval requests and results, and the approvers.

    With no approver user or user-group ids listed, nobody can approve from Slack unless
    `allow_any_channel_member` is set.

    Example:
        ```python
        from blocks import SlackBot
        slack = SlackBot.load("remediation-slack").get_client()
        ```
    """

    _block_type_name = "Remediation Slack Bot"
    _block_type_slug = "remediation-slack-bot"
    _description = "Slack bot token, approvals channel and approvers for remediation."

    bot_token: SecretStr = Field(description="The app's bot token (xoxb-…).")
    channel_id: str = Field(
        description="Id of the channel where approval requests and results are posted "
        "(C…; invite the bot to it)."
    )
    approver_user_ids: list[str] = Field(
        default_factory=list, description="Slack user ids (U…) allowed to approve or reject."
    )
    approver_usergroup_ids: list[str] = Field(
        default_factory=list,
        description="User-group ids (S…) whose members may approve or reject.",
    )
    allow_any_channel_member: bool = Field(
        default=False,
        description="Let any channel member (not a bot) approve when no approver ids are listed.",
    )
    api_base_url: str = Field(default=SLACK_API, description="Slack Web API base URL.")
    timeout_seconds: float = Field(
        default=10.0, gt=0, description="Timeout of every request, in seconds."
    )

    def get_client(self) -> SlackClient:
        from clients.slack import SlackClient

        return SlackClient(
            reveal(self.bot_token) or "",
            api_base=self.api_base_url,
            timeout=self.timeout_seconds,
        )
