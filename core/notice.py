"""A notice's parts, channel-neutral: trusted words as `str`, untrusted text as `Quoted`,
moments as `Moment`; the lowest layer of `core.messages`, so `core.words` can build
notices without importing the typed messages that use its words."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import Field

from core.models import Frozen
from core.policy import RiskLevel

# Text from hosts, logs or the model: an adapter shows it only as inert data (a code
# block, escaped), never as markup that could ping, link or break out.
Untrusted = Annotated[str, Field(json_schema_extra={"untrusted": True})]


class Tone(StrEnum):
    """How a notice reads at a glance (an adapter maps it to its colours or icons)."""

    ALERT = "alert"
    WARNING = "warning"
    INFO = "info"
    OK = "ok"
    QUIET = "quiet"


class Quoted(Frozen):
    """Untrusted text inside a notice, shown as an inert block of at most `limit` chars."""

    kind: Literal["quoted"] = "quoted"
    text: Untrusted
    limit: int = 900


class Moment(Frozen):
    """A point in time inside a notice (Discord: relative `<t:…:R>` and the UTC time)."""

    kind: Literal["moment"] = "moment"
    at: datetime


Part = str | Quoted | Moment


class Notice(Frozen):
    """A titled notice: the words (`core.words`) as parts, trusted text as `str`."""

    kind: Literal["notice"] = "notice"
    title: str
    text: list[Part]
    tone: Tone = Tone.ALERT
    risk: RiskLevel | None = Field(
        default=None, description="Shown in the risk level's colour instead of the tone's."
    )
    cycle_id: str | None = None
