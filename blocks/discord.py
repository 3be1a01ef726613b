"""Discord bot block: the approvals channel and who may approve."""

from __future__ import annotations

from pydantic import Field, SecretStr

from blocks.base import RemediationBlock, reveal
from clients.discord import DiscordClient

DISCORD_API = "https://discord.com/api/v10"


class DiscordBot(RemediationBlock):
    """The bot that posts approval requests and results, and the approver list.

    With no approver user or role ids listed, nobody can approve from Discord unless
    `allow_any_channel_member` is set.

    Example:
        ```python
        from blocks import DiscordBot
        discord = DiscordBot.load("remediation-bot").get_client()
        ```
    """

    _block_type_name = "Remediation Discord Bot"
    _block_type_slug = "remediation-discord-bot"
    _description = "Discord bot token, approvals channel and approvers for remediation."

    bot_token: SecretStr = Field(description="The bot's token (Authorization: Bot <token>).")
    approvals_channel_id: str = Field(
        description="Id of the channel where approval requests and results are posted."
    )
    guild_id: str | None = Field(
        default=None, description="Id of the server (guild); needed to check approver roles."
    )
    approver_user_ids: list[str] = Field(
        default_factory=list, description="Discord user ids allowed to approve or reject."
    )
    approver_role_ids: list[str] = Field(
        default_factory=list,
        description="Role ids whose members may approve or reject (needs guild_id).",
    )
    allow_any_channel_member: bool = Field(
        default=False,
        description="Let any non-bot member approve when no approver ids are listed.",
    )
    api_base_url: str = Field(default=DISCORD_API, description="Discord REST API base URL (v10).")
    timeout_seconds: float = Field(
        default=10.0, gt=0, description="Timeout of every request, in seconds."
    )

    def get_client(self) -> DiscordClient:
        return DiscordClient(
            reveal(self.bot_token) or "",
            api_base=self.api_base_url,
            timeout=self.timeout_seconds,
        )
