"""Errors raised by clients: one per external system, all `UpstreamError`s.

Each names the system, the operation and the cause, keeps the HTTP status when there
was one, and never contains a secret (messages pass through `core.redact.redact`).
"No data" is not an error: an empty result is returned as an empty list.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from core.errors import RemediationError
from core.redact import redact


class UpstreamError(RemediationError):
    """An external system failed to do what was asked."""

    service = "upstream"

    def __init__(
        self,
        operation: str,
        detail: str,
        *,
        status_code: int | None = None,
        secrets: Iterable[str] = (),
        request_sent: bool = True,
    ) -> None:
        self.operation = operation
        # False only when the request provably never left this process (connect failed),
        # which is the one case where a non-idempotent call may be retried.
        self.request_sent = request_sent
        self.status_code = status_code
        self.detail = redact(detail, secrets)[:2000]
        status = f" (HTTP {status_code})" if status_code is not None else ""
        super().__init__(f"{self.service} {operation} failed{status}: {self.detail}")


class PrometheusError(UpstreamError):
    service = "Prometheus"


class LokiError(UpstreamError):
    service = "Loki"


class DiscordError(UpstreamError):
    service = "Discord"


class DiscordNotFound(DiscordError):
    """The channel or message no longer exists (e.g. a deleted approval message)."""


class DiscordRateLimited(DiscordError):
    """Still rate limited after the bounded retries."""


class SlackError(UpstreamError):
    """A Slack Web API call failed; `error` is Slack's own code (`channel_not_found`),
    empty when no Slack answer was read (a connection failure)."""

    service = "Slack"

    def __init__(
        self,
        operation: str,
        detail: str,
        *,
        error: str = "",
        status_code: int | None = None,
        secrets: Iterable[str] = (),
        request_sent: bool = True,
    ) -> None:
        self.error = error
        super().__init__(
            operation,
            detail,
            status_code=status_code,
            secrets=secrets,
            request_sent=request_sent,
        )


class SlackNotFound(SlackError):
    """The channel, message, thread, user or user group does not exist (or was deleted)."""


class SlackNotInChannel(SlackError):
    """The bot was not invited to the channel."""


class SlackAuthError(SlackError):
    """The token is missing, wrong, revoked or expired, or its bot was deactivated."""


class SlackMissingScope(SlackError):
    """The token lacks a scope: `needed` names it, `provided` lists what it has."""

    def __init__(
        self, operation: str, detail: str, *, needed: str = "", provided: str = "", **kw: Any
    ) -> None:
        self.needed = needed
        self.provided = provided
        super().__init__(operation, detail, **kw)


class SlackMessageTooLong(SlackError):
    """The message `text` is over Slack's limit."""


class SlackInvalidBlocks(SlackError):
    """Slack refused the Block Kit array (malformed, or over a limit)."""


class SlackRateLimited(SlackError):
    """Still HTTP 429 after the retries; `retry_after` is Slack's last `Retry-After`."""

    def __init__(
        self, operation: str, detail: str, *, retry_after: float | None = None, **kw: Any
    ) -> None:
        self.retry_after = retry_after
        super().__init__(operation, detail, **kw)


class ClaudeError(UpstreamError):
    service = "Claude"


class LedgerError(UpstreamError):
    service = "ledger"


class JobRunnerError(UpstreamError):
    service = "job runner"


class AwxError(JobRunnerError):
    service = "AWX"


class SemaphoreError(JobRunnerError):
    service = "Semaphore"


class AnsibleError(JobRunnerError):
    service = "Ansible"


class LaunchRefused(JobRunnerError):
    """The runner would run the job wider than asked (e.g. AWX ignored `limit`)."""

    service = "job runner"
