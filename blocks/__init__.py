"""Prefect Blocks for every external system (`prefect block register -m blocks`).

Importing a runner's block module registers its runner (`blocks.job_runners`): a new
runner's module is imported here.
"""

from blocks.awx import AwxConnection
from blocks.claude import ClaudeCredentials
from blocks.discord import DiscordBot
from blocks.job_runners import runners_with_blocks
from blocks.ledger import LedgerDatabase
from blocks.loki import LokiConnection
from blocks.policy import RemediationPolicy
from blocks.prometheus import PrometheusConnection
from blocks.semaphore import SemaphoreConnection
from blocks.slack import SlackBot

ALL_BLOCKS = (
    PrometheusConnection,
    LokiConnection,
    DiscordBot,
    SlackBot,
    ClaudeCredentials,
    *(spec.block for spec in runners_with_blocks() if spec.block is not None),
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
    "SlackBot",
]
