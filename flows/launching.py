"""Stage 4: launch a job at most once per action, and poll it to an end.

The launch intent is written to the ledger before the request and the job id after it.
A rerun that finds a job id polls it; one that finds an intent without a job id looks
the job up by its marker and never relaunches blindly. A launch is retried only when
the request provably never left this process.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

from prefect.artifacts import acreate_markdown_artifact
from prefect.logging import get_run_logger
from pydantic import BaseModel

from clients.errors import LaunchRefused, UpstreamError
from core import render
from core.catalog import Runner
from core.fallback import degrades
from core.params import code_span, parameters_json
from core.policy import Policy
from core.records import ActionRecord, ActionStatus, Decision
from core.redact import redact
from core.settings import ActionSettings
from core.vetting import ProposedAction
from core.wire import JobRef, JobStatus
from tasks.connections import Connections
from tasks.controls import kill_switch_engaged
from tasks.jobs import (
    cancel_job,
    find_job_by_marker,
    launch_job,
    read_job_output,
    read_job_status,
)
from tasks.notify import post_notice
from tasks.runners import AnsibleRunner, JobRunner, LocalJobLost

MARKER_KEY = "remediation_action_id"
OUTPUT_TAIL_LINES = 40
SLOT_WAIT_SECONDS = 5.0  # longest wait between two tries for a host slot
REPORT_KEY = "remediation-action-report"


class ActionResult(BaseModel):
    action_id: str
    status: str
    decision: Decision | None = None
    job_id: str | None = None
    job_state: str | None = None
    verdict: str | None = None
    explanation: str = ""


def _runner(conns: Connections, action: ProposedAction, settings: ActionSettings) -> JobRunner:
    if action.runner is Runner.AWX:
        return conns.awx
    if action.runner is Runner.SEMAPHORE:
        return conns.semaphore
    return AnsibleRunner(
        inventory=settings.ansible_inventory, extra_vars=settings.ansible_extra_vars
    )


def _template(action: ProposedAction) -> Any:
    return action.template if action.runner is Runner.ANSIBLE else int(action.template)


class Launcher:
    def __init__(
        self,
        conns: Connections,
        policy: Policy,
        action: ProposedAction,
        decision: Decision,
        settings: ActionSettings,
        run_id: str,
    ) -> None:
        self.conns, self.policy, self.action = conns, policy, action
        self.decision, self.settings, self.run_id = decision, settings, run_id
        self.runner = _runner(conns, action, settings)
        self.log = get_run_logger()

    async def say(self, title: str, text: str, color: int = render.RED) -> None:
        await post_notice(self.conns, render.notice_message(title, text, color=color), self.log)

    async def not_run(self, why: str, title: str) -> ActionResult:
        """Nothing ran (or nobody can say what ran): the ledger, Discord and the action's
        artifact say why."""
        now = datetime.now(UTC)
        await self.conns.ledger.set_action_status(
            self.action.action_id, ActionStatus.NOT_RUN, now=now
        )
        await self.conns.ledger.record_audit(
            "not_run", {"why": why}, now=now, action_id=self.action.action_id
        )
        await self.say(title, why)
        record = await self.conns.ledger.get_action(self.action.action_id)
        await acreate_markdown_artifact(
            key=REPORT_KEY,
            markdown=not_run_report(self.action, self.decision, record, why),
            description=f"{self.action.catalog_key} on {self.action.host}: not run",
        )
        return ActionResult(
            action_id=self.action.action_id,
            status="not_run",
            decision=self.decision,
            job_id=record.job.job_id if record and record.job else None,
            job_state=record.job.state if record and record.job else None,
            explanation=why,
        )

    # --- launch, at most once ---------------------------------------------------------
    async def claim_slot(self) -> str:
        """Wait (visibly) while another job runs on this host or the global cap is full."""
        announced = False
        while True:
            outcome = await self.conns.ledger.claim_launch(
                action_id=self.action.action_id,
                host=self.action.host,
                runner=self.action.runner.value,
                template=self.action.template,
                marker=self.action.action_id,
                max_running=self.policy.max_running_jobs,
                now=datetime.now(UTC),
            )
            if outcome in ("claimed", "exists"):
                return outcome
            if not announced:
                why = (
                    "another remediation job is running on this host"
                    if outcome == "host_busy"
                    else f"{self.policy.max_running_jobs} remediation jobs are running"
                )
                self.log.info("waiting to launch: %s", why)
                await self.say(
                    f"⏳ Waiting: {self.action.catalog_key} on {self.action.host}",
                    f"Approved, waiting to launch: {why}.",
                    color=render.GREY,
                )
                announced = True
            await asyncio.sleep(min(self.settings.job_poll_seconds, SLOT_WAIT_SECONDS))

    async def launch(self) -> JobRef | ActionResult:
        """The action's job: the one recorded, the one found by its marker, or a new one
        launched exactly once — or an ActionResult saying why there is none."""
        record = await self.conns.ledger.get_action(self.action.action_id)
        if record is not None and record.status.terminal:
            self.log.info("action already %s: nothing to do", record.status.value)
            return ActionResult(
                action_id=self.action.action_id,
                status=record.status.value,
                decision=self.decision,
                job_id=record.job.job_id if record.job else None,
                job_state=record.job.state if record.job else None,
            )
        job = record.job if record else None
        if job is not None and job.job_id:
            return await self._recorded(job.runner, job.job_id, job.job_url)
        if job is None:
            if await kill_switch_engaged():
                return await self.not_run(
                    "Paused by operator (kill switch): nothing launched.",
                    f"⛔ Paused by operator: {self.action.catalog_key}",
                )
            if await self.claim_slot() == "claimed":
                if await kill_switch_engaged():  # checked again right before the launch
                    await self.conns.ledger.record_job_state(
                        self.action.action_id,
                        state="not_launched",
                        finished=True,
                        now=datetime.now(UTC),
                    )
                    return await self.not_run(
                        "Paused by operator (kill switch): nothing launched.",
                        f"⛔ Paused by operator: {self.action.catalog_key}",
                    )
                return await self._launch_new()
            record = await self.conns.ledger.get_action(self.action.action_id)
            job = record.job if record else None
        if job is not None and job.job_id:
            return await self._recorded(job.runner, job.job_id, job.job_url)
        return await self._find_unknown_launch(job.intent_at if job else datetime.now(UTC))

    async def _recorded(self, runner: str, job_id: str, url: str | None) -> JobRef | ActionResult:
        """A job id is in the ledger: poll that job — unless it was a local Ansible job
        of a process that has died, which nobody can follow any more."""
        if isinstance(self.runner, AnsibleRunner) and not self.runner.knows(job_id):
            return await self._unknown(
                f"Launch state unknown: local Ansible job `{job_id}` was started by a "
                "process that has since died, so its outcome cannot be read. It was NOT "
                "relaunched — please check the host by hand."
            )
        self.log.info("job %s already launched for this action: polling it", job_id)
        return JobRef(runner=runner, job_id=job_id, url=url)  # type: ignore[arg-type]

    async def _launch_new(self) -> JobRef | ActionResult:
        extra = {
            **self.action.parameters,
            MARKER_KEY: self.action.action_id,
            "remediation_flow_run_id": self.run_id,
        }
        intent_at = datetime.now(UTC)
        try:
            ref = await launch_job(self.runner, _template(self.action), self.action.host, extra)
        except LaunchRefused as exc:
            await self.conns.ledger.record_job_state(
                self.action.action_id, state="refused", finished=True, now=datetime.now(UTC)
            )
            return await self.not_run(
                f"Launch refused: template does not prompt on launch ({exc.detail})",
                f"🚫 Launch refused: {self.action.catalog_key} on {self.action.host}",
            )
        except UpstreamError as exc:
            # A 4xx answer (bad request, auth, unknown template, rate limit) means the
            # runner refused: it created no job, so there is nothing to look up.
            refused = exc.status_code is not None and 400 <= exc.status_code < 500
            if not exc.request_sent or refused:
                await self.conns.ledger.record_job_state(
                    self.action.action_id,
                    state="not_launched",
                    finished=True,
                    now=datetime.now(UTC),
                )
                where = "the runner refused it" if refused else "it never reached the runner"
                return await self.not_run(
                    f"Not launched: {where}. {exc}",
                    f"⚠️ Not launched: {self.action.catalog_key} on {self.action.host}",
                )
            self.log.error("launch outcome unknown (%s): looking the job up", exc)
            return await self._find_unknown_launch(intent_at)
        await self.conns.ledger.record_job_launched(
            self.action.action_id, job_id=ref.job_id, job_url=ref.url, now=datetime.now(UTC)
        )
        return ref

    async def _find_unknown_launch(self, since: datetime) -> JobRef | ActionResult:
        """An intent without a job id: the request may have created a job. Find it by
        its marker; never launch again."""
        found, failure = None, None
        for attempt in range(3):
            try:
                found = await find_job_by_marker(
                    self.runner,
                    _template(self.action),
                    MARKER_KEY,
                    self.action.action_id,
                    since - timedelta(minutes=1),
                )
                failure = None
            except UpstreamError as exc:
                self.log.warning("job look-up failed: %s", exc)
                failure = exc
            if found is not None:
                break
            await asyncio.sleep(1.0 + attempt)
        if found is None:
            searched = (
                f"the job could not be looked up ({failure.detail})"
                if failure is not None
                else f"none carrying marker {self.action.action_id} was found"
            )
            return await self._unknown(
                f"Launch state unknown: the request to {self.action.runner.value} may have "
                f"created a job, but {searched}. It was NOT relaunched — please check the "
                f"runner by hand (marker {MARKER_KEY}={self.action.action_id})."
            )
        await self.conns.ledger.record_job_launched(
            self.action.action_id, job_id=found.job_id, job_url=found.url, now=datetime.now(UTC)
        )
        self.log.info("found job %s by its marker", found.job_id)
        return found

    async def _unknown(self, why: str) -> ActionResult:
        """Escalate: a job may exist (or have run) that cannot be followed. Recorded as a
        counted attempt so the issue is not retried blindly, and never relaunched."""
        now = datetime.now(UTC)
        await self.conns.ledger.record_job_state(
            self.action.action_id, state="unknown", finished=True, now=now
        )
        await self.conns.ledger.record_attempt(
            action_id=self.action.action_id,
            fingerprints=self.action.fingerprints,
            host=self.action.host,
            catalog_key=self.action.catalog_key,
            outcome="launch_unknown",
            counts=True,
            explanation="the launch may or may not have created a job",
            now=now,
        )
        return await self.not_run(
            why, f"❓ Launch state unknown: {self.action.catalog_key} on {self.action.host}"
        )

    # --- poll ---------------------------------------------------------------------------
    async def poll(self, ref: JobRef) -> tuple[JobStatus | None, bool]:
        """Poll to a terminal state or the entry's maximum job time; cancel at the max."""
        record = await self.conns.ledger.get_action(self.action.action_id)
        started = (
            record.job.launched_at
            if record and record.job and record.job.launched_at
            else datetime.now(UTC)
        )
        deadline = started + timedelta(seconds=self.action.max_job_seconds)
        status: JobStatus | None = None
        while True:
            try:
                status = await read_job_status(self.runner, ref.job_id)
            except LocalJobLost as exc:
                self.log.error("job %s cannot be followed: %s", ref.job_id, exc)
                return None, False
            except UpstreamError as exc:
                self.log.warning("status of job %s unavailable: %s", ref.job_id, exc)
            else:
                await self.conns.ledger.record_job_state(
                    self.action.action_id, state=status.state.value, now=datetime.now(UTC)
                )
                if status.state.terminal:
                    return status, False
            if datetime.now(UTC) >= deadline:
                try:
                    await cancel_job(self.runner, ref.job_id)
                except UpstreamError as exc:
                    self.log.error("cancel of job %s failed: %s", ref.job_id, exc)
                return status, True
            await asyncio.sleep(self.settings.job_poll_seconds)

    async def output_tail(self, ref: JobRef) -> str:
        try:
            text = await read_job_output(self.runner, ref.job_id)
        except UpstreamError as exc:
            return f"(output unavailable: {exc})"
        lines = redact(text, self.conns.secrets).splitlines()
        return "\n".join(lines[-OUTPUT_TAIL_LINES:])


@degrades("not-run report", "markdown")
def not_run_report(
    action: ProposedAction, decision: Decision, record: ActionRecord | None, why: str
) -> str:
    """The artifact of an action that did not run (or whose job cannot be followed)."""
    job = record.job if record else None
    lines = [
        f"# `{action.catalog_key}` on `{action.host}`: not run",
        "",
        f"- action id: `{action.action_id}` · policy `{action.policy_hash}`",
        f"- parameters: {code_span(parameters_json(action.parameters), 20000)}",
        f"- decision: {decision.decision} by {decision.decider} ({decision.via})",
        f"- runner: {action.runner.value} `{action.template}`",
    ]
    if job is not None:
        lines.append(
            f"- job: `{job.job_id or 'none recorded'}` · state {job.state or '-'}"
            f" · launch intent {job.intent_at.isoformat()}"
            + (f" ({job.job_url})" if job.job_url else "")
        )
    lines += ["", f"**Why:** {why}", ""]
    return "\n".join(lines)
