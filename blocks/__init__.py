"""Prefect Blocks for every external system (`prefect block register -m blocks`)."""

from blocks.awx import AwxConnection
from blocks.claude import ClaudeCredentials
from blocks.discord import DiscordBot
from blocks.ledger import LedgerDatabase
from blocks.loki import LokiConnection
from blocks.policy import RemediationPolicy
from blocks.prometheus import PrometheusConnection
from blocks.semaphore import SemaphoreConnection

ALL_BLOCKS = (
    PrometheusConnection,
    LokiConnection,
    DiscordBot,
    ClaudeCredentials,
    AwxConnection,
    SemaphoreConnection,
    LedgerDatabase,
    RemediationPolicy,
)

__all__ = [
    "ALL_BLOCKS",
    "AwxConnection",
    "ClaudeCredentials",
    "DiscordBot",
    "LedgerDatabase",
    "LokiConnection",
    "PrometheusConnection",
    "RemediationPolicy",
    "SemaphoreConnection",
]
