"""Typed values that cross the client boundary: what each client returns.

Clients translate vendor JSON into these models (and vendor status words into
`JobState` through explicit tables), so nothing above `clients/` handles raw dicts.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from core.catalog import Runner


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


# --- Prometheus ---------------------------------------------------------------------
class Sample(Frozen):
    """One instant-vector element: labels, value (NaN/±Inf allowed) and its timestamp."""

    labels: dict[str, str]
    value: float
    timestamp: float


class Series(Frozen):
    """One range-vector element: labels and (timestamp, value) points in time order."""

    labels: dict[str, str]
    points: list[tuple[float, float]]


# --- Loki ---------------------------------------------------------------------------
class LogEntry(Frozen):
    ts_ns: int
    line: str


class LogStream(Frozen):
    labels: dict[str, str]
    entries: list[LogEntry]


# --- Discord ------------------------------------------------------------------------
class EmbedField(Frozen):
    name: str
    value: str
    inline: bool = False


class Embed(Frozen):
    title: str | None = None
    description: str | None = None
    url: str | None = None
    color: int | None = None
    fields: list[EmbedField] = Field(default_factory=list)
    footer: str | None = None
    timestamp: datetime | None = None


class DiscordUser(Frozen):
    id: str
    username: str
    bot: bool = False


class DiscordMessage(Frozen):
    id: str
    channel_id: str
    content: str = ""
    embeds: list[dict[str, Any]] = Field(default_factory=list)


# --- Slack --------------------------------------------------------------------------
class SlackIdentity(Frozen):
    """Who a token is (`auth.test`): the bot's user id, its bot id and the workspace."""

    user_id: str
    bot_id: str | None = None
    team_id: str | None = None


class SlackPosted(Frozen):
    """Where a posted message is: its channel and its `ts` (Slack's message id)."""

    channel: str
    ts: str


class SlackReaction(Frozen):
    """One emoji on a message (`white_check_mark`, `x`) and who added it."""

    name: str
    users: list[str]
    count: int


class SlackFetchedMessage(Frozen):
    """A message as Slack returns it (`reactions.get`): its text, its Block Kit blocks
    (empty for a plain-text message) and its reactions."""

    text: str
    blocks: list[dict[str, Any]]
    reactions: list[SlackReaction]


class SlackUser(Frozen):
    """A workspace member; `is_bot` covers bot users, app bots and Slackbot."""

    id: str
    name: str
    is_bot: bool
    deleted: bool = False


# --- Claude -------------------------------------------------------------------------
class TokenUsage(Frozen):
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_input_tokens: int = 0
    cache_creation_input_tokens: int = 0


class TextContent(Frozen):
    type: Literal["text"] = "text"
    text: str


class ToolUseContent(Frozen):
    type: Literal["tool_use"] = "tool_use"
    id: str
    name: str
    input: Any


class ClaudeReply(Frozen):
    """The model's answer: content blocks, why it stopped, and what it cost."""

    model: str
    content: list[TextContent | ToolUseContent]
    stop_reason: str | None
    usage: TokenUsage

    @property
    def text(self) -> str:
        return "".join(b.text for b in self.content if isinstance(b, TextContent))

    def tool_input(self, name: str) -> Any | None:
        for block in self.content:
            if isinstance(block, ToolUseContent) and block.name == name:
                return block.input
        return None


# --- Job runners (AWX, Semaphore, local Ansible) -------------------------------------
class JobState(StrEnum):
    """A job's state: the runners' (mapped from their words by the clients), then the
    end states only this project gives a job (stored as these strings in the ledger)."""

    PENDING = "pending"
    RUNNING = "running"
    SUCCESSFUL = "successful"
    FAILED = "failed"
    ERROR = "error"
    CANCELED = "canceled"
    # Ours, never a runner's:
    TIMED_OUT = "timeout"  # ran past the entry's max job time; cancelled
    REFUSED = "refused"  # created wider than asked (e.g. AWX ignored `limit`); cancelled
    NOT_LAUNCHED = "not_launched"  # no job exists: never sent, refused, or kill switch
    UNKNOWN = "unknown"  # may exist or have run, but cannot be found or followed

    @property
    def terminal(self) -> bool:
        return self not in (JobState.PENDING, JobState.RUNNING)


class JobRef(Frozen):
    """A launched job: which runner, its id there, and a link for humans when known."""

    runner: Runner
    job_id: str
    url: str | None = None


class JobStatus(Frozen):
    ref: JobRef
    state: JobState
    started: datetime | None = None
    finished: datetime | None = None
    elapsed: float | None = None
