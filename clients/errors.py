"""Errors raised by clients: one per external system, all `UpstreamError`s.

Each names the system, the operation and the cause, keeps the HTTP status when there
was one, and never contains a secret (messages pass through `core.redact.redact`).
"No data" is not an error: an empty result is returned as an empty list.
"""

from __future__ import annotations

from collections.abc import Iterable

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
    """Slack answered `ok: false`; `error` is Slack's code."""

    service = "Slack"

    def __init__(self, operation: str, error: str, **kwargs: object) -> None:
        self.error = error
        super().__init__(operation, error, **kwargs)  # type: ignore[arg-type]


class SlackNotFound(SlackError):
    """channel_not_found, message_not_found, thread_not_found, user_not_found, no_such_subteam."""


class SlackNotInChannel(SlackError):
    """not_in_channel: the bot was not invited to the channel."""


class SlackAuthError(SlackError):
    """invalid_auth, not_authed, account_inactive, token_revoked, token_expired."""


class SlackMissingScope(SlackError):
    """missing_scope: `needed` and `provided` as Slack reported them."""

    def __init__(
        self, operation: str, error: str, *, needed: str = "", provided: str = "", **kwargs: object
    ) -> None:
        self.needed, self.provided = needed, provided
        super().__init__(operation, error, **kwargs)


class SlackMessageTooLong(SlackError):
    """msg_too_long."""


class SlackInvalidBlocks(SlackError):
    """invalid_blocks, invalid_blocks_format."""


class SlackRateLimited(SlackError):
    """Still HTTP 429 after the retries."""

    def __init__(
        self, operation: str, error: str, *, retry_after: float = 0, **kwargs: object
    ) -> None:
        self.retry_after = retry_after
        super().__init__(operation, error, **kwargs)


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
