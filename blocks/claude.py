"""Claude (Anthropic API) credentials block."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import Field, SecretStr

from blocks.base import RemediationBlock, reveal
from clients.claude_model import DEFAULT_MODEL

if TYPE_CHECKING:
    from clients.claude import ClaudeClient


class ClaudeCredentials(RemediationBlock):
    """The Anthropic API key and model settings for analysis and verification.

    Example:
        ```python
        from blocks import ClaudeCredentials
        claude = ClaudeCredentials.load("remediation-claude").get_client()
        ```
    """

    _block_type_name = "Remediation Claude"
    _block_type_slug = "remediation-claude"
    _description = "Anthropic API key and model used to analyse issues and verify fixes."

    api_key: SecretStr = Field(description="Anthropic API key.")
    model: str = Field(default=DEFAULT_MODEL, description="Claude model id to use.")
    base_url: str | None = Field(
        default=None, description="Optional API base URL (default: Anthropic's own)."
    )
    max_tokens: int = Field(default=4096, gt=0, description="Maximum output tokens of one answer.")
    timeout_seconds: float = Field(
        default=120.0, gt=0, description="Timeout of one API request, in seconds."
    )
    max_retries: int = Field(
        default=2, ge=0, le=10, description="Retries the SDK makes on 429/5xx/timeouts."
    )

    def get_client(self) -> ClaudeClient:
        # Imported here: the SDK costs over a second, and most processes never call Claude.
        from clients.claude import ClaudeClient

        return ClaudeClient(
            reveal(self.api_key) or "",
            model=self.model,
            base_url=self.base_url,
            max_tokens=self.max_tokens,
            timeout=self.timeout_seconds,
            max_retries=self.max_retries,
        )
