"""`remediate_action`: one flow run per action — ask, wait, launch, poll, verify, report.

The run pauses (`pause_flow_run`) while humans decide; the approval listener resumes it
from Discord reactions and applies deadline defaults, or a person resumes it in the
Prefect UI. A Prefect pause timeout means nobody decided and the listener was absent:
the run fails, nothing runs, and the failure hook says so in Discord. On entry the run
reads the ledger for its action id and continues from what is recorded, so a restarted
run never re-posts, re-asks an answered question or re-launches.
"""

# No `from __future__ import annotations` here: Prefect validates a deployed flow's
# parameters from its annotations at run time, and string annotations do not resolve.

from datetime import UTC, datetime, timedelta
from typing import Any

from prefect import flow
from prefect.client.orchestration import get_client
from prefect.flow_runs import apause_flow_run
from prefect.logging import get_run_logger
from prefect.runtime import flow_run
from prefect.settings import PREFECT_UI_URL

from blocks.names import BlockNames
from clients.errors import UpstreamError
from core import render
from core.approval import Approvers, approval_embed, approval_markdown
from core.policy import Policy
from core.records import ActionRecord, ActionStatus, ApprovalRequest, Decision
from core.settings import ActionSettings
from core.vetting import ProposedAction
from flows.approval_input import ApprovalInput
from flows.execution import ActionResult, carry_out, close_cycle_if_done
from flows.heartbeat import keep_alive
from tasks.approval import post_approval_request
from tasks.connections import Connections, open_connections, resolve_policy
from tasks.notify import post_notice

NEEDED_BLOCKS = ("discord", "ledger", "prometheus", "loki", "claude", "awx", "semaphore")
ACTION_TAG = "remediation-action"


def _run_name() -> str:
    action = flow_run.get_parameters().get("action", {})
    return f"{action.get('host', '?')}-{action.get('catalog_key', '?')}"


def ui_link(flow_run_id: str | None, settings: ActionSettings) -> str | None:
    """The V2 page of the run, where the resume form is (see README)."""
    base = settings.ui_url or PREFECT_UI_URL.value()
    if not base or not flow_run_id:
        return None
    return f"{base.rstrip('/').removesuffix('/api')}/v2/runs/flow-run/{flow_run_id}"


async def _tag_run(run_id: str, action_id: str) -> None:
    """Tags let people (and the listener, as a cross-check) find action runs in the UI."""
    async with get_client() as client:
        run = await client.read_flow_run(run_id)
        tags = sorted({*run.tags, ACTION_TAG, f"action:{action_id}"})
        await client.update_flow_run(run_id, tags=tags)


class _Approval:
    """Asking and waiting, continued from whatever the ledger already holds."""

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
        self.log = get_run_logger()

    def approvers(self) -> Approvers:
        bot = self.conns.discord_bot
        return Approvers(
            user_ids=bot.approver_user_ids,
            role_ids=bot.approver_role_ids,
            any_member=bot.allow_any_channel_member,
        )

    async def ensure_requested(self, record: ActionRecord) -> ApprovalRequest:
        """Post the request once; a restarted run only re-points it to itself."""
        key = f"approve-{self.action.action_id}"
        if record.request is not None:
            request = record.request.model_copy(
                update={"flow_run_id": self.run_id, "pause_key": key}
            )
            await self.conns.ledger.record_approval_request(request)
            self.log.info(
                "approval already requested (message %s): not re-posting", request.message_id
            )
            return request
        now = datetime.now(UTC)
        deadline = now + timedelta(seconds=self.level.deadline_seconds)
        since = now - timedelta(seconds=self.policy.attempt_window_seconds)
        history = await self.conns.ledger.attempt_history(self.action.fingerprints, since=since)
        embed = approval_embed(
            self.action,
            self.level,
            deadline=deadline,
            approvers=self.approvers(),
            history=[r for fp in self.action.fingerprints for r in history.get(fp, [])],
            ui_url=ui_link(self.run_id, self.settings),
        )
        channel = self.conns.discord_bot.approvals_channel_id
        message_id = None
        try:
            message_id = (await post_approval_request(self.conns.discord, channel, embed)).id
        except UpstreamError as exc:
            # Still askable in the Prefect UI; the listener never runs a deadline default
            # for a request nobody could see in Discord.
            self.log.error("approval request could not be posted to Discord: %s", exc)
        request = ApprovalRequest(
            action_id=self.action.action_id,
            channel_id=channel,
            message_id=message_id,
            flow_run_id=self.run_id,
            risk=self.action.risk,
            deadline=deadline,
            policy_hash=self.action.policy_hash,
            requested_at=now,
            pause_key=key,
        )
        await self.conns.ledger.record_approval_request(request)
        await self.conns.ledger.record_audit(
            "approval_requested",
            {
                "message_id": message_id,
                "risk": self.action.risk.value,
                "deadline": deadline.isoformat(),
                "parameters": self.action.parameters,
                "policy_hash": self.action.policy_hash,
            },
            now=now,
            action_id=self.action.action_id,
        )
        return request

    async def wait(self, request: ApprovalRequest) -> Decision:
        """Pause until resumed; a UI approve that the register does not accept re-gates."""
        key = request.pause_key or f"approve-{self.action.action_id}"
        regates = 0
        while True:
            remaining = (request.deadline - datetime.now(UTC)).total_seconds()
            timeout = max(int(remaining), 0) + self.settings.pause_grace_seconds
            form = ApprovalInput.with_initial_data(
                description=approval_markdown(
                    self.action,
                    self.level,
                    deadline=request.deadline,
                    ui_allowed=self.level.ui_approval_allowed,
                )
            )
            answer = await apause_flow_run(
                wait_for_input=form,
                key=key,
                timeout=timeout,
                poll_interval=self.settings.pause_poll_seconds,
            )
            decision = await self._classify(answer)
            if (
                decision.via == "ui"
                and decision.decision == "approve"
                and not self.level.ui_approval_allowed
            ):
                regates += 1
                key = f"approve-{self.action.action_id}-regate-{regates}"
                await self._refuse_ui_approval(request)
                continue
            return decision

    async def _classify(self, answer: ApprovalInput) -> Decision:
        """The listener records its decision before resuming; any other resume came from
        the Prefect UI (the form carries no trustworthy "who")."""
        now = datetime.now(UTC)
        recorded = (await self.conns.ledger.get_action(self.action.action_id)).decision
        if recorded is not None and recorded.via != "ui" and recorded.decision == answer.decision:
            return recorded
        ui = Decision(
            action_id=self.action.action_id,
            decision=answer.decision,
            decider="Prefect UI",
            via="ui",
            comment=answer.comment or None,
            intended_at=now,
            applied_at=now,
        )
        if answer.decision == "approve" and not self.level.ui_approval_allowed:
            await self.conns.ledger.clear_unapplied_decision(self.action.action_id)
            return ui
        return await self.conns.ledger.record_applied_decision(ui)

    async def _refuse_ui_approval(self, request: ApprovalRequest) -> None:
        text = (
            f"An approval from the Prefect UI is not sufficient for "
            f"{self.action.risk.value}-risk actions. `{self.action.catalog_key}` on "
            f"`{self.action.host}` stays gated until {self.level.approvers_needed} "
            "approvers react ✅ in Discord (or someone rejects)."
        )
        await self.conns.ledger.record_audit(
            "ui_approve_refused",
            {"risk": self.action.risk},
            now=datetime.now(UTC),
            action_id=self.action.action_id,
        )
        await _say(
            self.conns,
            render.notice_message(
                f"🔒 Still gated: {self.action.catalog_key} on {self.action.host}",
                text,
                color=self.level.color,
            ),
        )


async def _say(conns: Connections, embed: Any) -> bool:
    return await post_notice(conns, embed, get_run_logger())


async def _on_failure(flow: Any, run: Any, state: Any) -> None:
    """Failure hook: tell a human. A run that fails while its action still awaits approval
    timed out in its pause — nobody decided and the listener was absent — so nothing ran."""
    params = run.parameters
    try:
        action = ProposedAction.model_validate(params["action"])
        names = BlockNames.model_validate(params.get("blocks") or {})
    except (KeyError, ValueError):
        return  # invalid parameters: the run's own error says so
    conns = await open_connections(names, ("discord", "ledger"))
    async with conns:
        now = datetime.now(UTC)
        record = await conns.ledger.get_action(action.action_id)
        waiting = record is None or record.status in (
            ActionStatus.PROPOSED,
            ActionStatus.AWAITING_APPROVAL,
        )
        # Approved, launch not claimed (e.g. waiting for its host): nothing ran, and no
        # reconciler continues a failed run without a launch intent — so it ends here.
        stranded = (
            record is not None and record.status is ActionStatus.APPROVED and record.job is None
        )
        if waiting:
            await conns.ledger.set_action_status(action.action_id, ActionStatus.EXPIRED, now=now)
            await conns.ledger.record_audit(
                "pause_timed_out", {"flow_run_id": str(run.id)}, now=now, action_id=action.action_id
            )
            title = f"⏱️ Expired: {action.catalog_key} on {action.host} did not run"
            text = (
                "Nobody decided before the deadline and the approval listener did not "
                "apply the deadline default (is it running?). Nothing was launched."
            )
        elif stranded:
            await conns.ledger.set_action_status(action.action_id, ActionStatus.NOT_RUN, now=now)
            await conns.ledger.record_audit(
                "action_run_failed", {"message": state.message}, now=now, action_id=action.action_id
            )
            title = f"⚠️ Not run: {action.catalog_key} on {action.host}"
            text = (
                "The run failed after the approval, before its launch: "
                f"{render.quoted(str(state.message), 800)}Nothing was launched; the next "
                "cycle reports the issue again if it persists."
            )
        else:
            await conns.ledger.record_audit(
                "action_run_failed", {"message": state.message}, now=now, action_id=action.action_id
            )
            title = f"⚠️ Action run failed: {action.catalog_key} on {action.host}"
            text = (
                f"The run failed while the action was {record.status.value}: "
                f"{render.quoted(str(state.message), 800)}The ledger keeps its state; "
                "the reconciler continues it if a job was launched."
            )
        await _say(conns, render.notice_message(title, text, color=render.GREY))
        if waiting or stranded:  # it ended: it may have been the cycle's last action
            await close_cycle_if_done(conns, action.cycle_id)


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
    conns = await open_connections(blocks, NEEDED_BLOCKS)
    # The heartbeat tells the reconciler this run is alive (also while paused).
    heartbeat = keep_alive(conns.ledger, proposal.action_id, run_id, settings.heartbeat_seconds)
    async with conns, heartbeat:
        ledger = conns.ledger
        await ledger.record_actions([proposal], now=datetime.now(UTC))
        await _tag_run(run_id, proposal.action_id)
        record = await ledger.get_action(proposal.action_id)
        assert record is not None
        approval = _Approval(conns, checked, proposal, settings, run_id)
        if record.decision is not None and record.decision.applied_at is not None:
            decision = record.decision  # decided before a restart: never re-ask
        elif record.status.terminal:
            return ActionResult(action_id=proposal.action_id, status=record.status.value)
        else:
            request = await approval.ensure_requested(record)
            decision = await approval.wait(request)
        await ledger.record_audit(
            "decision",
            decision.model_dump(mode="json"),
            now=datetime.now(UTC),
            action_id=proposal.action_id,
        )
        if decision.decision == "reject":
            await ledger.set_action_status(
                proposal.action_id, ActionStatus.REJECTED, now=datetime.now(UTC)
            )
            await _say(
                conns,
                render.notice_message(
                    f"❌ Rejected: {proposal.catalog_key} on {proposal.host}",
                    f"Rejected by {decision.decider} ({decision.via})"
                    + (f": {decision.comment}" if decision.comment else "")
                    + ". Nothing was launched.",
                    color=render.GREY,
                ),
            )
            await close_cycle_if_done(conns, proposal.cycle_id)
            return ActionResult(action_id=proposal.action_id, status="rejected", decision=decision)
        # Decided: `approved` until the launch is claimed, also while the host is busy
        # (the listener marks it when it applies a decision; a UI approve, a decision
        # applied before a restart, or one the listener has not marked yet, here).
        await ledger.mark_approved(proposal.action_id, now=datetime.now(UTC))
        return await carry_out(conns, checked, proposal, decision, settings, run_id)


__all__ = ["ActionResult", "remediate_action", "ui_link"]
