"""The policy as a block: every flow reads the document `blocks.policy` names; an edit
that breaks it (as the Prefect UI can save it) fails the next run at its start, naming
the field, and is said in Discord once — and once more when it is fixed."""

from __future__ import annotations

import uuid

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import BlockDocumentUpdate

from blocks.names import BlockNames
from blocks.policy import RemediationPolicy
from core.errors import ConfigError
from core.policy import load_policy, policy_hash
from core.report import CycleOutcome
from flows.remediation_cycle import remediation_cycle
from tasks.connections import resolve_policy
from tests.fixtures.loki_discord import CHANNEL_ID
from tests.fixtures.stack import FAST_POLICY, Stack


def titles(stack: Stack) -> list[str]:
    return [
        m.embeds[0].get("title") or ""
        for m in stack.discord.messages(CHANNEL_ID)
        if m.embeds and "Policy block" in (m.embeds[0].get("title") or "")
    ]


async def save_unchecked(name: str, document: dict) -> None:
    """Write the block's document straight through the API, as the UI's editor does:
    nothing on the server validates it against the policy schema."""
    async with get_client() as client:
        stored = await client.read_block_document_by_name(name, "remediation-policy")
        await client.update_block_document(
            stored.id, BlockDocumentUpdate(data={"document": document})
        )


def test_the_block_refuses_an_invalid_document_naming_the_field() -> None:
    with pytest.raises(ValueError, match=r"policy\.dedup_ttl_seconds"):
        RemediationPolicy(document={"dedup_ttl_seconds": "six hours"})


async def test_a_named_block_is_the_policy_and_a_document_beside_it_is_refused(
    prefect_harness: str,
) -> None:
    name = f"t-policy-{uuid.uuid4().hex[:8]}"
    await RemediationPolicy(document=FAST_POLICY).asave(name)
    resolved = await resolve_policy(None, BlockNames(policy=name))
    assert resolved.policy == load_policy(FAST_POLICY)
    assert resolved.hash == policy_hash(load_policy(FAST_POLICY))
    assert name in resolved.source
    defaults = await resolve_policy(None, BlockNames())
    assert defaults.policy == load_policy({}) and defaults.source == "the built-in defaults"
    with pytest.raises(ConfigError, match=r"both a policy document and blocks\.policy"):
        await resolve_policy(FAST_POLICY, BlockNames(policy=name))
    with pytest.raises(ConfigError, match=r"blocks\.policy"):
        await resolve_policy(None, BlockNames(policy="t-policy-never-saved"))


async def test_an_invalid_edit_fails_each_cycle_at_start_and_discord_hears_it_once(
    stack: Stack,
) -> None:
    name = f"t-policy-{uuid.uuid4().hex[:8]}"
    await RemediationPolicy(document=FAST_POLICY).asave(name)
    names = stack.names.model_copy(update={"policy": name})
    report = await remediation_cycle(blocks=names, dispatch="none")
    assert report.outcome is CycleOutcome.NO_ISSUES
    assert titles(stack) == []  # valid from the start: nothing to say

    broken = {**FAST_POLICY, "risk": {"low": {"deadline_seconds": -5}}}
    await save_unchecked(name, broken)
    for _ in range(2):
        with pytest.raises(ConfigError) as failed:
            await remediation_cycle(blocks=names, dispatch="none")
        assert failed.value.field.startswith("policy.risk.low")
        assert name in failed.value.problem
    [said] = titles(stack)
    assert said == f"⚠️ Policy block {name!r} is invalid — remediation stopped"
    [message] = [m for m in stack.discord.messages(CHANNEL_ID) if said in str(m.embeds)]
    assert "policy.risk.low" in message.embeds[0]["description"]

    await RemediationPolicy(document=FAST_POLICY).asave(name, overwrite=True)
    for _ in range(2):
        report = await remediation_cycle(blocks=names, dispatch="none")
        assert report.outcome is CycleOutcome.NO_ISSUES
    assert titles(stack) == [said, f"✅ Policy block {name!r} is valid again"]
