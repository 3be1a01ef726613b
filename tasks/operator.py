"""Operator controls' I/O, used by the cycle, the listener and the watchdog: the kill
switch's notices, heartbeats and the dead-man's switch, and the self-metrics.

- Kill switch (`tasks.controls`, the Prefect Variable `remediation_kill_switch`): the
  cycle still detects but proposes nothing; the listener answers every pending approval
  "paused by operator"; the launcher checks it again right before every launch. Each
  on/off transition is posted once.
- Dead-man's switch (the rules: `core.deadman`): whoever runs next compares the last
  heartbeats, and `Ledger.set_alert_state` makes each firing and each recovery post
  exactly once.
- Self-metrics: at the end of every cycle, a Prefect table artifact, and the Prometheus
  text format in a file for node_exporter's textfile collector and/or a Pushgateway.

Plain functions, not tasks: the listener runs them on every poll, where a task run would
cost API calls for nothing a person wants to see.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from prefect.artifacts import acreate_table_artifact
from prefect.logging import get_logger

from clients.errors import UpstreamError
from core import deadman, words
from core.deadman import CYCLE_ALERT, KILL_SWITCH_ALERT, LISTENER_ALERT, AlertState, Beat
from core.messages import Notice, parts_text
from core.records import ActionStatus
from core.report import CycleReport
from core.selfmetrics import build_metrics, render_text, table_rows
from core.settings import OperatorSettings
from tasks.chat import say
from tasks.connections import Connections
from tasks.controls import KILL_SWITCH, kill_switch_engaged
from tasks.selfmetrics import push_metrics, write_metrics_textfile

log = get_logger("remediation.operator")
METRICS_ARTIFACT = "remediation-self-metrics"


async def transition_alert(
    conns: Connections, name: str, firing: bool, now: datetime, notice: Notice
) -> bool:
    """Post `notice` once per change of alert `name`; a failed post undoes the change so
    that the next component to notice tries again. True when it changed and was posted."""
    alerts = conns.ledger.operations
    detail = parts_text(notice.text)[:500]
    if not await alerts.set_alert_state(name, firing=firing, now=now, detail=detail):
        return False
    if await say(conns, notice, log):
        return True
    await alerts.set_alert_state(name, firing=not firing, now=now, detail="post failed")
    return False


# --- kill switch ------------------------------------------------------------------------
async def note_kill_switch(conns: Connections, engaged: bool, now: datetime) -> None:
    """Post the kill switch's transition on or off, once (nothing when it did not change)."""
    notice = words.kill_switch_notice(engaged, KILL_SWITCH)
    await transition_alert(conns, KILL_SWITCH_ALERT, engaged, now, notice)


async def paused_by_operator(conns: Connections, now: datetime) -> bool:
    """True when the kill switch is on: the cycle proposes nothing (still detects)."""
    engaged = await kill_switch_engaged()
    try:
        await note_kill_switch(conns, engaged, now)
    except UpstreamError as exc:
        log.error("kill-switch notice failed: %s", exc)
    return engaged


# --- dead-man's switch ----------------------------------------------------------------------
async def record_heartbeat(
    conns: Connections, component: str, now: datetime, *, stale_after_seconds: float
) -> None:
    """A heartbeat that says how long it stays fresh (read by the dead-man's switch)."""
    detail = deadman.heartbeat_detail(stale_after_seconds)
    await conns.ledger.operations.heartbeat(component, now=now, detail=detail)


async def _beat(conns: Connections, component: str) -> Beat | None:
    found = await conns.ledger.operations.heartbeat_detail(component)
    return Beat(at=found[0], detail=found[1]) if found else None


async def _cleared(conns: Connections, name: str, beat: datetime | None) -> bool:
    state = await conns.ledger.operations.alert_state(name)
    alert = AlertState(firing=state[0], since=state[1]) if state else None
    return deadman.cleared_by(alert, beat)


async def cycle_recovered(conns: Connections, now: datetime, at: datetime | None = None) -> None:
    notice = words.cycle_running_again(at or now)
    await transition_alert(conns, CYCLE_ALERT, False, now, notice)


async def _listener_recovered(conns: Connections, now: datetime, at: datetime) -> None:
    notice = words.listener_polling_again(at)
    await transition_alert(conns, LISTENER_ALERT, False, now, notice)


async def _check_cycle(
    conns: Connections, now: datetime, limit: float | None, who: str
) -> bool | None:
    beat = await _beat(conns, "cycle")
    silence = deadman.cycle_silence(beat, now, limit)
    if silence is None:
        return None  # no cycle ever completed: nothing to compare with
    if silence.silent:
        notice = words.cycle_silent(silence.last, silence.limit_seconds, who)
        await transition_alert(conns, CYCLE_ALERT, True, now, notice)
    elif await _cleared(conns, CYCLE_ALERT, silence.last):
        await cycle_recovered(conns, now, silence.last)
    return silence.silent


async def _check_listener(
    conns: Connections, now: datetime, limit: float | None, who: str
) -> bool | None:
    if who == "listener":  # it is polling right now
        await _listener_recovered(conns, now, now)
        return False
    beat = await _beat(conns, "listener")
    waiting = await conns.ledger.actions.actions_with_status(ActionStatus.AWAITING_APPROVAL)
    silence = deadman.listener_silence(beat, [r.created_at for r in waiting], now, limit)
    if silence.silent:
        notice = words.listener_silent(beat.at if beat else None, len(waiting), who)
        await transition_alert(conns, LISTENER_ALERT, True, now, notice)
    elif beat and await _cleared(conns, LISTENER_ALERT, beat.at):
        await _listener_recovered(conns, now, beat.at)
    return silence.silent


async def check_dead_mans_switch(
    conns: Connections,
    component: str,
    now: datetime,
    *,
    cycle_stale_seconds: float | None = None,
    listener_stale_seconds: float | None = None,
) -> dict[str, bool | None]:
    """Alert once when the cycle or the listener stopped beating, and once on recovery
    (the rules: `core.deadman`). `component` is the one checking ("cycle", "listener",
    "watchdog"). Returns {"cycle": silent?, "listener": silent while approvals wait?}
    (None: never seen). Never raises an upstream error: a failing check must not stop
    the component that runs it."""
    out: dict[str, bool | None] = {}
    try:
        if component != "cycle":  # a running cycle has not completed yet: not judged
            out["cycle"] = await _check_cycle(conns, now, cycle_stale_seconds, component)
        out["listener"] = await _check_listener(conns, now, listener_stale_seconds, component)
    except UpstreamError as exc:
        log.error("dead-man's switch check by the %s failed: %s", component, exc)
    return out


# --- end of a cycle: heartbeat, recovery, self-metrics ---------------------------------------
async def cycle_completed(
    conns: Connections, report: CycleReport, settings: OperatorSettings
) -> None:
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
    conns: Connections, report: CycleReport | None, settings: OperatorSettings, now: datetime
) -> str:
    """Build the self-metrics; write the table artifact, the textfile and the push.
    Returns the Prometheus text (a failure of one output is logged, not raised)."""
    window = timedelta(seconds=settings.metrics_window_seconds)
    try:
        facts = await conns.ledger.operations.metric_facts(now=now, window=window)
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
