"""The root of the project's error tree, and errors raised by pure code.

RemediationError                 every error this project raises on purpose
  ├ ConfigError                  invalid policy or settings (names the field)
  └ UpstreamError                clients/errors.py: an external system failed
      ├ PrometheusError · LokiError · DiscordError · SlackError · ClaudeError · LedgerError
      └ JobRunnerError ─ LaunchRefused
"""

from __future__ import annotations


class RemediationError(Exception):
    """Base class for every error the project raises deliberately."""


class ConfigError(RemediationError):
    """Invalid configuration or policy; `field` names the offending setting."""

    def __init__(self, field: str, problem: str) -> None:
        self.field = field
        self.problem = problem
        super().__init__(f"invalid configuration at {field!r}: {problem}")
