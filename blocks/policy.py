"""The policy as a Prefect block: one JSON document that every deployment names.

Thresholds, critical units, the action catalog, the risk register and the limits are
data, not code: `remediation-policy apply FILE` saves them here, the Prefect UI's block
page shows and edits them, and the cycle, the listener, the reconciler and every action
run read the same document by name (`blocks.policy` in their parameters). The document
is validated by `core.policy` when the block is built (so `apply` refuses a bad file)
and again when it is loaded (so an invalid edit made in the UI fails the next run at its
start, naming the field).
"""

from __future__ import annotations

from typing import Any

from prefect.exceptions import ObjectNotFound
from pydantic import Field, field_validator

from blocks.base import RemediationBlock
from core.errors import ConfigError
from core.policy import Policy, load_policy

DEFAULT_POLICY_BLOCK = "remediation-policy"


class RemediationPolicy(RemediationBlock):
    """The remediation policy (see `remediation-policy defaults` for every field).

    Example:
        ```python
        from blocks import RemediationPolicy
        policy = RemediationPolicy.load("remediation-policy").get_client()
        ```
    """

    _block_type_name = "Remediation Policy"
    _block_type_slug = "remediation-policy"
    _description = (
        "The remediation policy as one JSON document: detection rules, the action catalog, "
        "the risk register (deadlines, defaults, approvers), dedup and attempt limits. "
        "Keys left out keep their defaults; an invalid edit fails the next run at start."
    )

    document: dict[str, Any] = Field(
        default_factory=dict,
        description="The policy document (`remediation-policy defaults --json` prints the "
        "full default; any key left out keeps its default).",
    )

    @field_validator("document")
    @classmethod
    def _valid_policy(cls, document: dict[str, Any]) -> dict[str, Any]:
        try:
            load_policy(document)
        except ConfigError as exc:  # pydantic reports a ValueError with the field named
            raise ValueError(f"{exc.field}: {exc.problem}") from exc
        return document

    def get_client(self) -> Policy:
        """The validated policy (blocks here build their client; a policy is its own)."""
        return load_policy(self.document)


async def load_policy_block(name: str) -> Policy:
    """The policy saved as block `name`. The stored document is read as data and checked
    here, so an invalid edit names the policy field that is wrong (loading it through
    the block class would fail with Prefect's "failed validation", naming nothing)."""
    from prefect.client.orchestration import get_client

    try:
        async with get_client() as client:
            stored = await client.read_block_document_by_name(
                name, RemediationPolicy.get_block_type_slug()
            )
    except ObjectNotFound as exc:
        raise ConfigError(
            "blocks.policy",
            f"no RemediationPolicy block named {name!r} (save one with "
            "`remediation-policy apply FILE`)",
        ) from exc
    document = (stored.data or {}).get("document")
    try:
        return load_policy(document if isinstance(document, dict) else None)
    except ConfigError as exc:
        raise ConfigError(exc.field, f"in RemediationPolicy block {name!r}: {exc.problem}") from exc
