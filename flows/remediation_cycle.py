"""The remediation cycle: detect → dedup → enrich → analyse → vet → route → dispatch → close.

Reads like the seed chart; each step is `tasks.cycle.CycleRun`'s, and where the chart
branches `core.cycle` decides. The cycle never pauses itself and never waits for humans:
each surviving action becomes its own `remediate_action` flow run.
"""

# No `from __future__ import annotations` here: Prefect validates a deployed flow's
# parameters from its annotations at run time, and string annotations do not resolve.

import argparse
import asyncio
import uuid
from datetime import UTC, datetime
from typing import Any

from prefect import flow
from prefect.runtime import flow_run

from blocks.names import BlockNames
from core.cycle import outcome_without_new_issues
from core.dispatch import DispatchMode
from core.report import CycleOutcome, CycleReport
from core.settings import OperatorSettings
from flows.dispatch import dispatch_actions
from tasks.cycle import CycleRun, cycle_connections, cycle_policy
from tasks.operator import check_dead_mans_switch, cycle_completed, paused_by_operator


@flow(name="remediation-cycle", log_prints=False, retries=0)
async def remediation_cycle(
    policy: dict[str, Any] | None = None,
    blocks: BlockNames = BlockNames(),  # noqa: B008 - an immutable pydantic default
    dispatch: DispatchMode = "auto",
    dispatch_options: dict[str, Any] | None = None,
    controls: OperatorSettings = OperatorSettings(),  # noqa: B008
) -> CycleReport:
    """One pass of the runbook: find issues, ask Claude, vet, route, dispatch actions."""
    now = datetime.now(UTC)
    cycle_id = str(flow_run.get_id() or uuid.uuid4())
    resolved = await cycle_policy(policy, blocks, cycle_id, now)  # invalid: fails, said once
    async with await cycle_connections(blocks) as conns:
        cycle = CycleRun(conns, resolved.policy, cycle_id, now)
        await cycle.start(blocks, flow_run.get_id())
        await check_dead_mans_switch(conns, "cycle", now)
        # Stage 1: detect, dedup
        detection = await cycle.detect()
        if detection.prometheus_unreachable:
            return await close(cycle, controls, CycleOutcome.PROMETHEUS_UNREACHABLE)
        new = await cycle.review(await cycle.dedup(detection))
        if not new:
            outcome = outcome_without_new_issues(
                escalated=bool(cycle.progress.escalated), found_any=bool(detection.issues)
            )
            return await close(cycle, controls, outcome)
        if await paused_by_operator(conns, now):
            return await close(cycle, controls, CycleOutcome.PAUSED_BY_OPERATOR)
        # Stage 2: enrich, analyse, vet
        logs = await cycle.enrich(new)
        analysis = await cycle.analyse(new, detection, logs)
        if analysis is None:  # the issues went to a human as they are
            return await close(cycle, controls, CycleOutcome.ANALYSIS_UNAVAILABLE)
        vetting = await cycle.vet(analysis, new)
        # route, dispatch
        routing = await cycle.route(analysis, vetting, new)
        result = await dispatch_actions(
            vetting.approved,
            mode=dispatch,
            options={**(dispatch_options or {}), "blocks": blocks.model_dump(), "policy": policy},
            ledger=conns.ledger,
            suspended_risks=cycle.policy.risk.waiting("suspend"),
        )
        await cycle.dispatched(routing, result, len(vetting.approved))
        return await close(cycle, controls)


async def close(
    cycle: CycleRun, controls: OperatorSettings, outcome: CycleOutcome | None = None
) -> CycleReport:
    """The chart's end: the report and the cycle summary; the heartbeat, the dead-man's
    recovery and the self-metrics."""
    if outcome is not None:
        cycle.ended(outcome)
    report = await cycle.finish()
    await cycle_completed(cycle.conns, report, controls)
    return report


def main(argv: list[str] | None = None) -> int:
    """Console entry point: run one cycle locally against the configured blocks."""
    parser = argparse.ArgumentParser(
        prog="remediation-cycle",
        description="Run one remediation cycle locally (actions run in-process).",
    )
    parser.add_argument("--policy", help="policy file (YAML or JSON)")
    parser.add_argument("--blocks", help='block names as JSON, e.g. \'{"ledger": "main"}\'')
    parser.add_argument(
        "--dispatch",
        choices=["inline", "none"],
        default="inline",
        help="inline: run each action in this process; none: only propose",
    )
    args = parser.parse_args(argv)
    from tasks.policy_file import read_policy_file

    data = read_policy_file(args.policy) if args.policy else None
    names = BlockNames.model_validate_json(args.blocks) if args.blocks else BlockNames()
    report = asyncio.run(remediation_cycle(policy=data, blocks=names, dispatch=args.dispatch))
    print(
        f"{report.outcome.value}: {len(report.issues)} issues, "
        f"{sum(a.dispatched for a in report.actions)} actions dispatched"
    )
    return 0
