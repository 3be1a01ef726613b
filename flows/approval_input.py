"""The resume form of a paused action (flat: the Prefect UI renders it as a form)."""

from __future__ import annotations

from typing import Literal

from prefect.input import RunInput
from pydantic import Field


class ApprovalInput(RunInput):
    """Approve or reject one remediation action. Who decided is not a field: anyone can
    type a name; the listener records chat deciders in the ledger."""

    decision: Literal["approve", "reject"] = Field(
        description="approve runs the job now; reject cancels it"
    )
    comment: str = Field(default="", max_length=500, description="Optional note for the record")
