"""Shared by the launching and reconciler tests: approved actions, running them, and
reading what Discord, the ledger and Prefect hold afterwards."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId
from prefect.client.schemas.objects import State

from core.catalog import Runner
from core.records import ActionRecord, Decision
from core.vetting import ProposedAction
from flows.remediate_action import remediate_action
from sandbox.jobs import PLAYBOOK_DIR
from tests.fixtures.loki_discord import CHANNEL_ID
from tests.fixtures.stack import FAST_POLICY, FAST_SETTINGS, Stack
from tests.flows.actions import policy_with, proposal

SETTINGS: dict[str, Any] = {**FAST_SETTINGS, "heartbeat_seconds": 0.5}
SCRIPTED = policy_with("noop_fix")  # AWX template 30, replaced per test with a script


def restart_unit(
    runner: str = "awx", *, host: str = "web-02", unit: str = "nginx.service", cycle: str = "c1"
) -> ProposedAction:
    """The real restart_unit playbook (template 10 on AWX and Semaphore, the playbook
    file for local Ansible) for one failed unit."""
    action = proposal(FAST_POLICY, key="restart_unit", host=host, unit=unit, cycle_id=cycle)
    if runner == "semaphore":
        return action.model_copy(update={"runner": Runner.SEMAPHORE})
    if runner == "ansible":
        playbook = str(PLAYBOOK_DIR / "restart_unit.yml")
        return action.model_copy(update={"runner": Runner.ANSIBLE, "template": playbook})
    return action


def scripted(*, host: str = "web-02", unit: str = "nginx.service", cycle: str = "c1",
             **update: Any) -> ProposedAction:  # fmt: skip
    """An action on AWX's scripted template 30 (what it does is set per test)."""
    return proposal(SCRIPTED, host=host, unit=unit, cycle_id=cycle).model_copy(update=update)


def local_ansible_settings(stack: Stack) -> dict[str, Any]:
    """The local runner reaching the sandbox fleet the way the sandbox servers do."""
    return {
        **SETTINGS,
        "ansible_extra_vars": {
            "fleet_url": stack.fleet.url,
            "ansible_connection": "local",
            "ansible_python_interpreter": sys.executable,
        },
    }


async def approve(stack: Stack, action: ProposedAction, decider: str = "alice") -> None:
    """Record the action with an applied approval, as the listener leaves it."""
    now = datetime.now(UTC)
    async with stack.ledger() as ledger:
        await ledger.actions.record_actions([action], now=now)
        await ledger.actions.record_applied_decision(
            Decision(
                action_id=action.action_id,
                decision="approve",
                decider=decider,
                via="discord",
                intended_at=now,
                applied_at=now,
            )
        )


def parameters(stack: Stack, action: ProposedAction, policy: dict[str, Any],
               settings: dict[str, Any]) -> dict[str, Any]:  # fmt: skip
    return {
        "action": action.model_dump(mode="json"),
        "policy": policy,
        "blocks": stack.names.model_dump(),
        "settings": settings,
    }


async def run_approved(
    stack: Stack,
    action: ProposedAction,
    policy: dict[str, Any] | None = None,
    settings: dict[str, Any] | None = None,
) -> State:
    """Approve, then run `remediate_action` in this process to its end."""
    await approve(stack, action)
    params = parameters(stack, action, policy or FAST_POLICY, settings or SETTINGS)
    return await remediate_action(**params, return_state=True)


async def record(stack: Stack, action_id: str) -> ActionRecord:
    async with stack.ledger() as ledger:
        found = await ledger.actions.get_action(action_id)
    assert found is not None
    return found


async def audit_events(stack: Stack, action_id: str) -> list[str]:
    async with stack.ledger() as ledger:
        return [e["event"] for e in await ledger.operations.audit_trail(action_id=action_id)]


def embeds(stack: Stack, title_prefix: str = "") -> list[dict[str, Any]]:
    """Every embed posted to the approvals channel whose title starts with the prefix."""
    return [
        e
        for m in stack.discord.messages(CHANNEL_ID)
        for e in m.embeds
        if (e.get("title") or "").startswith(title_prefix)
    ]


def text_of(embed: dict[str, Any]) -> str:
    parts = [embed.get("title") or "", embed.get("description") or ""]
    parts += [f"{f.get('name')}: {f.get('value')}" for f in embed.get("fields") or []]
    return "\n".join(parts)


async def artifacts(run_id: str | UUID) -> list[Any]:
    async with get_client() as client:
        return await client.read_artifacts(
            artifact_filter=ArtifactFilter(
                flow_run_id=ArtifactFilterFlowRunId(any_=[UUID(str(run_id))])
            )
        )
