"""`remediate_action`: one flow run per action — ask, wait, launch, poll, verify, report.

The run pauses (`pause_flow_run`) while humans decide — or, where its risk level says
`wait: suspend`, suspends (`suspend_flow_run`: the process ends, and on resume a worker
re-runs the flow from the top); the approval listener resumes it from chat reactions
and applies deadline defaults, or a person resumes it in the Prefect UI. A Prefect pause
timeout means nobody decided and the listener was absent: the run fails, nothing runs,
and the failure hook says so in chat (a suspended run's timeout fails it on the
server, with no hook: the reconciler expires it). On entry the run reads the ledger for
its action id and continues from what is recorded, so a restarted or resumed-suspended
run never re-posts, re-asks an answered question or re-launches.
"""

# No `from __future__ import annotations` here: Prefect validates a deployed flow's
# parameters from its annotations at run time, and string annotations do not resolve.

from datetime import UTC, datetime
from typing import Any

from prefect import flow
from prefect.flow_runs import apause_flow_run, asuspend_flow_run
from prefect.runtime import flow_run

from blocks.names import BlockNames
from core.action_run import (
    ActionResult,
    ResumeKind,
    applied_decision,
    pause_key,
    pause_timeout,
    regates_of,
)
from core.approval import approval_markdown
from core.launch import MARKER_KEY, NoJobToPoll
from core.records import ApprovalRequest, Decision
from core.settings import ActionSettings
from core.vetting import ProposedAction
from flows.approval_input import ApprovalInput
from tasks import action_run as step
from tasks.action_run import ActionRunContext, ui_link
from tasks.chat import CHAT_BLOCKS
from tasks.connections import open_connections, resolve_policy, runner_blocks
from tasks.heartbeat import keep_alive
from tasks.launch import launch_once, poll_job
from tasks.verification import report_result

# The services' blocks; every registered job runner's block is added (`runner_blocks()`).
NEEDED_BLOCKS = (*CHAT_BLOCKS, "ledger", "prometheus", "loki", "claude")


def _run_name() -> str:
    action = flow_run.get_parameters().get("action", {})
    return f"{action.get('host', '?')}-{action.get('catalog_key', '?')}"


async def wait_for_decision(run: ActionRunContext, request: ApprovalRequest) -> Decision:
    """Pause or suspend until resumed (in this flow's own context); a UI approve that the
    risk level does not accept re-gates under a fresh pause key. A suspend ends this
    process: on resume the flow re-runs from the top and, under the same key, the
    suspend returns the stored answer at once."""
    action, level = run.action, run.level
    wait = await step.choose_wait(run)
    key = request.pause_key or pause_key(action.action_id)
    while True:
        form = ApprovalInput.with_initial_data(
            description=approval_markdown(
                action,
                level,
                deadline=request.deadline,
                ui_allowed=level.ui_approval_allowed,
                channel=run.conns.chat.title,
            )
        )
        # The Prefect timeout is a safety net: the listener applies deadline defaults.
        timeout = pause_timeout(
            request.deadline, datetime.now(UTC), run.settings.pause_grace_seconds
        )
        if wait.mode == "suspend":
            answer = await asuspend_flow_run(wait_for_input=form, key=key, timeout=timeout)
        else:
            answer = await apause_flow_run(
                wait_for_input=form,
                key=key,
                timeout=timeout,
                poll_interval=run.settings.pause_poll_seconds,
            )
        kind, decision = await step.read_resume(run, answer.decision, answer.comment)
        if kind is not ResumeKind.UI_APPROVE_REGATED:
            return decision
        key = pause_key(action.action_id, regates_of(key) + 1)
        await step.refuse_ui_approval(run, request.model_copy(update={"pause_key": key}))


async def _on_failure(flow: Any, run: Any, state: Any) -> None:
    """Failure hook: tell a human what the failed run leaves behind (a run that fails
    while its action still awaits approval timed out in its pause: nothing ran)."""
    try:
        action = ProposedAction.model_validate(run.parameters["action"])
        names = BlockNames.model_validate(run.parameters.get("blocks") or {})
    except (KeyError, ValueError):
        return  # invalid parameters: the run's own error says so
    await step.record_failed_run(names, action, str(run.id), state.message)


@flow(name="remediate-action", flow_run_name=_run_name, retries=0, on_failure=[_on_failure])
async def remediate_action(
    action: dict[str, Any],
    policy: dict[str, Any] | None = None,
    blocks: BlockNames = BlockNames(),  # noqa: B008 - an immutable pydantic default
    settings: ActionSettings = ActionSettings(),  # noqa: B008
) -> ActionResult:
    """Ask for approval of one vetted action, then run, poll, verify and report it."""
    proposal = ProposedAction.model_validate(action)
    checked = (await resolve_policy(policy, blocks)).policy
    run_id = str(flow_run.get_id())
    conns = await open_connections(blocks, (*NEEDED_BLOCKS, *runner_blocks()))
    # The heartbeat tells the reconciler this run is alive (also while paused).
    heartbeat = keep_alive(conns.ledger, proposal.action_id, run_id, settings.heartbeat_seconds)
    async with conns, heartbeat:
        run = ActionRunContext(conns, checked, proposal, settings, run_id)
        record = await step.begin(run)
        decision = applied_decision(record)  # decided before a restart: never re-ask
        if decision is None:
            if record.status.terminal:
                return ActionResult.ended_before(record)
            request = await step.request_approval(run, record)
            decision = await wait_for_decision(run, request)
        await step.record_decision(run, decision)
        if decision.decision == "reject":
            return await step.end_rejected(run, decision)
        await step.mark_approved(run)
        try:
            job = await launch_once(run)
        except NoJobToPoll as stopped:
            return await step.end_without_job(run, decision, stopped)
        end = await poll_job(run, job)
        return await report_result(run, decision, job, end)


__all__ = ["MARKER_KEY", "ActionResult", "remediate_action", "ui_link"]
