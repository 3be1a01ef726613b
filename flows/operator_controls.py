"""Operator controls woven into the cycle and the listener: the kill switch, maintenance
notices, the dead-man's switch and the self-metrics.

- Kill switch (`tasks.controls`, the Prefect Variable `remediation_kill_switch`): the
  cycle still detects but proposes nothing; the listener answers every pending approval
  "paused by operator" (a reject, recorded with via="operator"); the launcher checks it
  again right before every launch. Each on/off transition is posted once.
- Dead-man's switch: every heartbeat declares how long it stays fresh (the cycle: twice
  its schedule interval; the listener: its `listener_stale_seconds`). Whoever runs next
  — the cycle, the listener or the `remediation-watchdog` flow — compares, and
  `Ledger.set_alert_state` makes each firing and each recovery post exactly once.
- Self-metrics: at the end of every cycle, a Prefect table artifact, and the Prometheus
  text format in a file for node_exporter's textfile collector and/or a Pushgateway.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from prefect.artifacts import acreate_table_artifact
from prefect.logging import get_logger
from pydantic import BaseModel, ConfigDict, Field, field_validator

from clients.errors import UpstreamError
from core import render
from core.policy import Policy
from core.records import ActionRecord, ActionStatus, Decision
from core.report import CycleReport
from core.selfmetrics import build_metrics, render_text, table_rows
from tasks.controls import KILL_SWITCH, kill_switch_engaged
from tasks.notify import post_notice
from tasks.selfmetrics import push_metrics, write_metrics_textfile

log = get_logger("remediation.operator")

PAUSED_COMMENT = "paused by operator"
OPERATOR = "operator (kill switch)"
KILL_SWITCH_ALERT = "kill-switch"
CYCLE_ALERT = "dead-mans-switch-cycle"
LISTENER_ALERT = "dead-mans-switch-listener"
DEFAULT_CYCLE_INTERVAL = 900.0
DEFAULT_LISTENER_STALE = 120.0
METRICS_ARTIFACT = "remediation-self-metrics"


class OperatorSettings(BaseModel):
    """Operator-control tunables of the cycle (a deployment parameter)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    cycle_interval_seconds: float = Field(
        default=DEFAULT_CYCLE_INTERVAL,
        gt=0,
        description="The cycle's schedule interval: the dead-man's switch fires when no "
        "cycle completed for twice this long.",
    )
    metrics_textfile: str | None = Field(
        default=None,
        description="Write the self-metrics here after each cycle (a *.prom file in "
        "node_exporter's --collector.textfile.directory); None: no file.",
    )
    pushgateway_url: str | None = Field(
        default=None,
        description="Also PUT the self-metrics to this Pushgateway (no credentials in the "
        "URL: parameters are not secret); None: no push.",
    )
    pushgateway_job: str = Field(
        default="prefect_remediation", min_length=1, description="The Pushgateway job label."
    )
    metrics_window_seconds: float = Field(
        default=24 * 3600,
        gt=0,
        description="Window of the approvals, jobs, verdicts and recent_* series.",
    )

    @field_validator("metrics_textfile")
    @classmethod
    def _prom_suffix(cls, value: str | None) -> str | None:
        if value is not None and not value.endswith(".prom"):
            raise ValueError("node_exporter's textfile collector only reads *.prom files")
        return value

    @field_validator("pushgateway_url")
    @classmethod
    def _no_credentials(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError("give an http(s) URL, e.g. http://pushgateway:9091")
        if parts.username or parts.password:
            raise ValueError("no credentials in the URL (flow parameters are not secret)")
        return value


async def _post(conns: Any, title: str, text: str, color: int) -> bool:
    return await post_notice(conns, render.notice_message(title, text, color=color), log)


async def _transition(
    conns: Any, name: str, firing: bool, now: datetime, title: str, text: str, color: int
) -> bool:
    """Post once per change of `name`; a failed post undoes the change so that the next
    component to notice tries again."""
    if not await conns.ledger.set_alert_state(name, firing=firing, now=now, detail=text[:500]):
        return False
    if await _post(conns, title, text, color):
        return True
    await conns.ledger.set_alert_state(name, firing=not firing, now=now, detail="post failed")
    return False


# --- kill switch ------------------------------------------------------------------------
async def _note_kill_switch(conns: Any, engaged: bool, now: datetime) -> None:
    if engaged:
        await _transition(
            conns,
            KILL_SWITCH_ALERT,
            True,
            now,
            "⛔ Remediation paused by operator",
            f"The kill switch (Prefect Variable `{KILL_SWITCH}`) is on: issues are still "
            "detected, but no action is proposed or launched, and pending approvals are "
            "answered \u201cpaused by operator\u201d.",
            render.RED,
        )
    else:
        await _transition(
            conns,
            KILL_SWITCH_ALERT,
            False,
            now,
            "▶️ Remediation resumed",
            f"The kill switch (`{KILL_SWITCH}`) is off: cycles propose actions again.",
            render.GREEN,
        )


async def cycle_paused_by_operator(conns: Any, now: datetime) -> bool:
    """True when the kill switch is on: the cycle proposes nothing (still detects)."""
    engaged = await kill_switch_engaged()
    try:
        await _note_kill_switch(conns, engaged, now)
    except UpstreamError as exc:
        log.error("kill-switch notice failed: %s", exc)
    return engaged


async def answer_pending_when_paused(
    listener: Any, waiting: list[ActionRecord], now: datetime
) -> bool:
    """With the kill switch on, answer every pending approval "paused by operator" and
    return True (the listener then resumes nothing else this poll)."""
    engaged = await kill_switch_engaged()
    await _note_kill_switch(listener.conns, engaged, now)
    if not engaged:
        return False
    run_ids = [r.request.flow_run_id for r in waiting if r.request and r.request.flow_run_id]
    paused = await listener.paused_action_runs(run_ids) if run_ids else {}
    answered: list[ActionRecord] = []
    for record in waiting:
        run = paused.get(record.request.flow_run_id or "") if record.request else None
        if run is None:
            continue  # not paused yet: answered on a later poll
        # An intent recorded before the switch went on is applied as it is (the first
        # intent always wins); if it is an approve, the launcher refuses to launch.
        decision = record.decision or Decision(
            action_id=record.proposal.action_id,
            decision="reject",
            decider=OPERATOR,
            via="operator",
            comment=PAUSED_COMMENT,
            intended_at=now,
        )
        try:
            if await listener.apply(record, run, decision) and record.decision is None:
                answered.append(record)
        except Exception as exc:  # noqa: BLE001 - one action's trouble never stops the rest
            log.warning("could not answer %s: %s", record.proposal.action_id, exc)
    if answered:
        lines = "\n".join(f"- `{r.proposal.catalog_key}` on {r.proposal.host}" for r in answered)
        await _post(
            listener.conns,
            f"⛔ Paused by operator: {len(answered)} pending approval(s) answered",
            f"Rejected with \u201c{PAUSED_COMMENT}\u201d; nothing was launched.\n{lines}",
            render.GREY,
        )
    return True


# --- maintenance windows --------------------------------------------------------------------
def maintenance_notices(policy: Policy, report: CycleReport, now: datetime) -> list[str]:
    """Why hosts with new issues got no action: they are in a maintenance window."""
    new = set(report.new_issues)
    hosts = sorted({i.host for i in report.issues if i.fingerprint in new})
    notices = []
    for host in hosts:
        window = policy.maintenance_for(host, now)
        if window is not None:
            notices.append(
                f"{host} is in maintenance window {window.name!r}: its issues are reported, "
                "no action is proposed for it"
            )
    return notices


# --- dead-man's switch ----------------------------------------------------------------------
def heartbeat_detail(stale_after_seconds: float) -> str:
    return json.dumps({"stale_after_seconds": stale_after_seconds})


async def record_heartbeat(
    conns: Any, component: str, now: datetime, *, stale_after_seconds: float
) -> None:
    """A heartbeat that says how long it stays fresh (read by the dead-man's switch)."""
    await conns.ledger.heartbeat(component, now=now, detail=heartbeat_detail(stale_after_seconds))


def _declared(detail: str) -> float | None:
    try:
        value = json.loads(detail).get("stale_after_seconds") if detail else None
    except (ValueError, AttributeError):
        return None
    return float(value) if isinstance(value, int | float) and value > 0 else None


def _ts(at: datetime) -> str:
    return f"<t:{int(at.timestamp())}:R> ({at.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC)"


async def _beat_since_alert(conns: Any, name: str, beat: datetime | None) -> bool:
    """True when `name` fires and a heartbeat arrived after it fired: a recovery. Only
    a new beat clears an alert, so checkers with different thresholds never flip it."""
    state = await conns.ledger.alert_state(name)
    return state is not None and state[0] and beat is not None and beat > state[1]


async def _check_cycle(conns: Any, now: datetime, limit: float | None, who: str) -> bool | None:
    beat = await conns.ledger.heartbeat_detail("cycle")
    if beat is None:
        return None  # no cycle ever completed: nothing to compare with
    at, detail = beat
    limit = limit or _declared(detail) or 2 * DEFAULT_CYCLE_INTERVAL
    stale = (now - at).total_seconds() > limit
    if stale:
        await _transition(
            conns,
            CYCLE_ALERT,
            True,
            now,
            "💀 Remediation cycle silent",
            f"No remediation cycle has completed since {_ts(at)}; one is expected at least "
            f"every {limit:.0f} s. Check the cycle deployment's schedule, its work pool's "
            f"worker and the last cycle run in Prefect. (Noticed by the {who}.)",
            render.RED,
        )
    elif await _beat_since_alert(conns, CYCLE_ALERT, at):
        await cycle_recovered(conns, now, at)
    return stale


async def cycle_recovered(conns: Any, now: datetime, at: datetime | None = None) -> None:
    await _transition(
        conns,
        CYCLE_ALERT,
        False,
        now,
        "✅ Remediation cycle running again",
        f"A cycle completed {_ts(at or now)}.",
        render.GREEN,
    )


async def _listener_recovered(conns: Any, now: datetime, at: datetime) -> None:
    await _transition(
        conns,
        LISTENER_ALERT,
        False,
        now,
        "✅ Approval listener polling again",
        f"The listener polled {_ts(at)}: reactions are read and deadlines applied again.",
        render.GREEN,
    )


async def _check_listener(conns: Any, now: datetime, limit: float | None, who: str) -> bool | None:
    if who == "listener":  # it is polling right now
        await _listener_recovered(conns, now, now)
        return False
    beat = await conns.ledger.heartbeat_detail("listener")
    waiting = await conns.ledger.actions_with_status(ActionStatus.AWAITING_APPROVAL)
    since = beat[0] if beat else min((r.created_at for r in waiting), default=now)
    limit = limit or (_declared(beat[1]) if beat else None) or DEFAULT_LISTENER_STALE
    stale = (now - since).total_seconds() > limit
    if stale and waiting:
        last = f"since {_ts(since)}" if beat else "at all"
        await _transition(
            conns,
            LISTENER_ALERT,
            True,
            now,
            "💀 Approval listener silent",
            f"No approval listener has polled {last} while {len(waiting)} approval(s) "
            "wait: reactions are not read and deadlines are not applied. Start "
            "`remediation-listener` or check the approval-listener deployment. "
            f"(Noticed by the {who}.)",
            render.RED,
        )
    elif beat and await _beat_since_alert(conns, LISTENER_ALERT, beat[0]):
        await _listener_recovered(conns, now, beat[0])
    return stale and bool(waiting)


async def check_dead_mans_switch(
    conns: Any,
    component: str,
    now: datetime,
    *,
    cycle_stale_seconds: float | None = None,
    listener_stale_seconds: float | None = None,
) -> dict[str, bool | None]:
    """Alert once when the cycle or the listener stopped beating, and once on recovery.

    Fires when the last heartbeat is older than the threshold: the argument when given,
    else what the heartbeat declared, else twice 15 minutes (cycle) or 2 minutes
    (listener, and only while approvals wait). Clears once a heartbeat arrives after
    the alert fired. Returns {"cycle": silent?, "listener": silent while approvals
    wait?} (None: never seen). Never raises an upstream error: a failing check must not
    stop the component that runs it."""
    out: dict[str, bool | None] = {}
    try:
        if component != "cycle":  # a running cycle has not completed yet: not judged
            out["cycle"] = await _check_cycle(conns, now, cycle_stale_seconds, component)
        out["listener"] = await _check_listener(conns, now, listener_stale_seconds, component)
    except UpstreamError as exc:
        log.error("dead-man's switch check by the %s failed: %s", component, exc)
    return out


# --- end of a cycle: heartbeat, recovery, self-metrics ---------------------------------------
async def cycle_completed(conns: Any, report: CycleReport, settings: OperatorSettings) -> None:
    """The cycle's heartbeat (fresh for twice its interval), the recovery notice if the
    dead-man's switch had fired, and the self-metrics. Never raises an upstream error."""
    now = datetime.now(UTC)
    try:
        await record_heartbeat(
            conns, "cycle", now, stale_after_seconds=2 * settings.cycle_interval_seconds
        )
        await cycle_recovered(conns, now)
    except UpstreamError as exc:
        log.error("could not record the cycle's heartbeat: %s", exc)
    await publish_self_metrics(conns, report, settings, now)


async def publish_self_metrics(
    conns: Any, report: CycleReport | None, settings: OperatorSettings, now: datetime
) -> str:
    """Build the self-metrics; write the table artifact, the textfile and the push.
    Returns the Prometheus text (a failure of one output is logged, not raised)."""
    window = timedelta(seconds=settings.metrics_window_seconds)
    try:
        facts = await conns.ledger.metric_facts(now=now, window=window)
    except UpstreamError as exc:
        log.error("self-metrics: ledger unavailable: %s", exc)
        return ""
    families = build_metrics(report, facts, now=now, kill_switch=await kill_switch_engaged())
    text = render_text(families)
    await acreate_table_artifact(
        key=METRICS_ARTIFACT,
        table=table_rows(families),
        description=f"Self-metrics at the end of cycle {report.cycle_id}"
        if report
        else "Self-metrics",
    )
    if settings.metrics_textfile:
        try:
            await write_metrics_textfile(settings.metrics_textfile, text)
        except OSError as exc:
            log.error("self-metrics: cannot write %s: %s", settings.metrics_textfile, exc)
    if settings.pushgateway_url:
        try:
            await push_metrics(settings.pushgateway_url, settings.pushgateway_job, text)
        except UpstreamError as exc:
            log.error("self-metrics: push failed: %s", exc)
    return text
