"""The steps of one action run (`remediate_action`) up to its launch, and how a run that
launches nothing ends: record, ask, read the resume, reject, report "not run", and the
failure hook's reckoning. The launch and poll are in `tasks/launch.py`, verification
and the result in `tasks/verification.py`.

On entry the run reads the ledger for its action id and continues from what is
recorded, so a restarted run never re-posts, re-asks an answered question or
re-launches.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from prefect import task
from prefect.artifacts import acreate_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.context import FlowRunContext
from prefect.logging import get_run_logger
from prefect.settings import PREFECT_UI_URL

from blocks.job_runners import runner_spec
from blocks.names import BlockNames
from clients.errors import UpstreamError
from clients.prefect_runs import PrefectRuns
from core import words
from core.action_run import (
    ActionResult,
    FailedRun,
    ResumeKind,
    WaitChoice,
    classify_failed_run,
    classify_resume,
    pause_key,
    ui_decision,
    wait_choice,
)
from core.launch import ActionAlreadyEnded, NoJobToPoll
from core.messages import ApprovalCard, Notice
from core.policy import Policy
from core.records import ActionRecord, ActionStatus, ApprovalRequest, Decision
from core.settings import ActionSettings
from core.verify import not_run_report
from core.vetting import ProposedAction
from tasks.chat import CHAT_BLOCKS, ask, say
from tasks.closing import post_cycle_summary
from tasks.connections import Connections, open_connections
from tasks.runners import AnsibleRunner, JobRunner

REPORT_KEY = "remediation-action-report"


def job_runner(conns: Connections, action: ProposedAction, settings: ActionSettings) -> JobRunner:
    """The runner's client built from its block (`blocks.job_runners`); a runner without
    a block runs the playbook on this machine."""
    spec = runner_spec(action.runner)
    if spec.block is not None:
        return conns.runner(spec)
    return AnsibleRunner(
        inventory=settings.ansible_inventory, extra_vars=settings.ansible_extra_vars
    )


class ActionRunContext:
    """What every step of one action's run needs — its connections, policy, action,
    settings and flow run id — and the runner it launches on (one per run: a local
    Ansible runner can follow only the jobs it started)."""

    def __init__(
        self,
        conns: Connections,
        policy: Policy,
        action: ProposedAction,
        settings: ActionSettings,
        run_id: str,
    ) -> None:
        self.conns, self.policy, self.action = conns, policy, action
        self.settings, self.run_id = settings, run_id
        self.level = policy.risk.level(action.risk)
        self.runner = job_runner(conns, action, settings)
        self.ledger = conns.ledger
        self.log = get_run_logger()

    async def say(self, notice: Notice) -> bool:
        """A notice about this action, beside its approval request when there is one."""
        return await say(self.conns, notice, self.log, about=self.action.action_id)

    async def audit(self, event: str, detail: dict[str, Any]) -> None:
        await self.ledger.operations.record_audit(
            event, detail, now=datetime.now(UTC), action_id=self.action.action_id
        )


def ui_link(flow_run_id: str | None, settings: ActionSettings) -> str | None:
    """The V2 page of the run, where the resume form is (see README)."""
    base = settings.ui_url or PREFECT_UI_URL.value()
    if not base or not flow_run_id:
        return None
    return f"{base.rstrip('/').removesuffix('/api')}/v2/runs/flow-run/{flow_run_id}"


async def begin(run: ActionRunContext) -> ActionRecord:
    """Record the action (once), tag the run, and read what the ledger holds for it. A
    run re-entering after a suspend (its own request on record) did both already: it
    goes straight on (a resumed suspended run's launch waits for this)."""
    record = await run.ledger.actions.get_action(run.action.action_id)
    if record is not None and record.request and record.request.flow_run_id == run.run_id:
        return record
    await run.ledger.actions.record_actions([run.action], now=datetime.now(UTC))
    async with PrefectRuns.open() as runs:  # people and the listener find action runs by tag
        await runs.tag_action_run(run.run_id, run.action.action_id)
    record = await run.ledger.actions.get_action(run.action.action_id)
    assert record is not None
    return record


async def choose_wait(run: ActionRunContext) -> WaitChoice:
    """How this run waits for its decision (`core.action_run.wait_choice`); a level that
    waits suspended in a run Prefect cannot suspend waits paused, and says so."""
    ctx = FlowRunContext.get()
    flow_run = ctx.flow_run if ctx is not None else None
    choice = wait_choice(
        run.level,
        deployment=bool(flow_run and flow_run.deployment_id),
        subflow=bool(flow_run and flow_run.parent_task_run_id),
    )
    if choice.fallback is not None:
        run.log.warning(
            "%s risk waits suspended, but %s: waiting paused instead (a live process "
            "until decided; see README, Long waits)",
            run.action.risk.value,
            choice.fallback,
        )
        await run.audit("suspend_unavailable", {"why": choice.fallback})
    return choice


@task(name="request-approval", cache_policy=NO_CACHE, retries=0)
async def request_approval(run: ActionRunContext, record: ActionRecord) -> ApprovalRequest:
    """Post the request once; a restarted run only re-points it to itself. The same run
    re-entering after a suspend keeps its pause key (a re-gate's, if it was re-gated):
    Prefect answers an already used key at once with its stored input."""
    action, key = run.action, pause_key(run.action.action_id)
    if record.request is not None:
        if record.request.flow_run_id == run.run_id and record.request.pause_key:
            key = record.request.pause_key
        request = record.request.model_copy(update={"flow_run_id": run.run_id, "pause_key": key})
        if request != record.request:  # a re-entering suspended run changes nothing
            await run.ledger.actions.record_approval_request(request)
        run.log.info("approval already requested (message %s): not re-posting", request.message_id)
        return request
    now = datetime.now(UTC)
    deadline = now + timedelta(seconds=run.level.deadline_seconds)
    since = now - timedelta(seconds=run.policy.attempt_window_seconds)
    history = await run.ledger.episodes.attempt_history(action.fingerprints, since=since)
    chat = run.conns.chat
    card = ApprovalCard(
        action=action,
        level=run.level,
        deadline=deadline,
        approvers=chat.approvers,
        history=[r for fp in action.fingerprints for r in history.get(fp, [])],
        ui_url=ui_link(run.run_id, run.settings),
    )
    channel_id, message_id = chat.channel_id, None
    try:
        posted = await ask(run.conns, card)
        channel_id, message_id = posted.channel_id, posted.message_id
    except UpstreamError as exc:
        # Still askable in the Prefect UI; the listener never runs a deadline default
        # for a request nobody could see in chat.
        run.log.error("approval request could not be posted to %s: %s", chat.title, exc)
    request = ApprovalRequest(
        action_id=action.action_id,
        channel_id=channel_id,
        message_id=message_id,
        flow_run_id=run.run_id,
        risk=action.risk,
        deadline=deadline,
        policy_hash=action.policy_hash,
        requested_at=now,
        pause_key=key,
    )
    await run.ledger.actions.record_approval_request(request)
    await run.audit(
        "approval_requested",
        {
            "message_id": message_id,
            "risk": action.risk.value,
            "deadline": deadline.isoformat(),
            "parameters": action.parameters,
            "policy_hash": action.policy_hash,
        },
    )
    return request


async def read_resume(
    run: ActionRunContext, answer: Literal["approve", "reject"], comment: str
) -> tuple[ResumeKind, Decision]:
    """Who resumed the run, and the decision it stands for (recorded when it stands)."""
    recorded = (await run.ledger.actions.get_action(run.action.action_id)).decision
    kind = classify_resume(answer, recorded, ui_approval_allowed=run.level.ui_approval_allowed)
    if kind is ResumeKind.LISTENER:
        assert recorded is not None
        return kind, recorded
    ui = ui_decision(run.action.action_id, answer, comment, datetime.now(UTC))
    if kind is ResumeKind.UI_APPROVE_REGATED:
        await run.ledger.actions.clear_unapplied_decision(run.action.action_id)
        return kind, ui
    return kind, await run.ledger.actions.record_applied_decision(ui)


async def refuse_ui_approval(run: ActionRunContext, request: ApprovalRequest) -> None:
    """Say the UI approve was not enough, and record the re-gate's pause key (a run that
    re-enters after a suspend waits under it, not under an answered one)."""
    await run.ledger.actions.record_approval_request(request)
    await run.audit("ui_approve_refused", {"risk": run.action.risk})
    await run.say(words.still_gated(run.action, run.level, channel=run.conns.chat.title))


async def record_decision(run: ActionRunContext, decision: Decision) -> None:
    await run.audit("decision", decision.model_dump(mode="json"))


async def end_rejected(run: ActionRunContext, decision: Decision) -> ActionResult:
    await run.ledger.actions.set_action_status(
        run.action.action_id, ActionStatus.REJECTED, now=datetime.now(UTC)
    )
    await run.say(words.rejected(run.action, decision))
    await close_cycle_if_done(run.conns, run.action.cycle_id)
    return ActionResult(
        action_id=run.action.action_id, status=ActionStatus.REJECTED, decision=decision
    )


async def mark_approved(run: ActionRunContext) -> None:
    """Decided: `approved` until the launch is claimed, also while the host is busy
    (the listener marks it when it applies a decision; a UI approve, a decision applied
    before a restart, or one the listener has not marked yet, here)."""
    await run.ledger.actions.mark_approved(run.action.action_id, now=datetime.now(UTC))


async def end_without_job(
    run: ActionRunContext, decision: Decision, stopped: NoJobToPoll
) -> ActionResult:
    """Nothing ran (or nobody can say what ran): the ledger, the chat channel and the action's
    artifact say why. An action that had already ended is left as it is."""
    action = run.action
    if isinstance(stopped, ActionAlreadyEnded):
        run.log.info("action already %s: nothing to do", stopped.status.value)
        job = stopped.job
        result = ActionResult(
            action_id=action.action_id,
            status=stopped.status,
            decision=decision,
            job_id=job.job_id if job else None,
            job_state=job.state if job else None,
        )
        await close_cycle_if_done(run.conns, action.cycle_id)
        return result
    why = words.not_run_why(stopped, action)
    now = datetime.now(UTC)
    await run.ledger.actions.set_action_status(action.action_id, ActionStatus.NOT_RUN, now=now)
    await run.audit("not_run", {"why": why})
    await run.say(words.not_run(stopped, action))
    record = await run.ledger.actions.get_action(action.action_id)
    await acreate_markdown_artifact(
        key=REPORT_KEY,
        markdown=not_run_report(action, decision, record, why),
        description=f"{action.catalog_key} on {action.host}: not run",
    )
    await close_cycle_if_done(run.conns, action.cycle_id)
    job = record.job if record else None
    return ActionResult(
        action_id=action.action_id,
        status=ActionStatus.NOT_RUN,
        decision=decision,
        job_id=job.job_id if job else None,
        job_state=job.state if job else None,
        explanation=why,
    )


async def close_cycle_if_done(conns: Connections, cycle_id: str) -> None:
    """When the last action of a cycle ends, post the cycle summary (exactly once)."""
    await post_cycle_summary(conns, cycle_id)


async def record_failed_run(
    blocks: BlockNames, action: ProposedAction, run_id: str, message: str | None
) -> None:
    """A failed run: say what it leaves behind (`core.action_run.classify_failed_run`),
    end the action where nothing ran, and close its cycle if it was the last."""
    conns = await open_connections(blocks, (*CHAT_BLOCKS, "ledger"))
    async with conns:
        ledger, now = conns.ledger, datetime.now(UTC)
        record = await ledger.actions.get_action(action.action_id)
        kind = classify_failed_run(record)
        if kind is FailedRun.WAITING:
            await ledger.actions.set_action_status(action.action_id, ActionStatus.EXPIRED, now=now)
            event, detail = "pause_timed_out", {"flow_run_id": run_id}
        else:
            if kind is FailedRun.STRANDED:
                await ledger.actions.set_action_status(
                    action.action_id, ActionStatus.NOT_RUN, now=now
                )
            event, detail = "action_run_failed", {"message": message}
        await ledger.operations.record_audit(event, detail, now=now, action_id=action.action_id)
        status = record.status if record else None
        notice = words.run_failed(action, kind, status, str(message))
        await say(conns, notice, get_run_logger())
        if kind is not FailedRun.OTHER:  # it ended: it may have been the cycle's last action
            await close_cycle_if_done(conns, action.cycle_id)
