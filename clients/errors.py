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
