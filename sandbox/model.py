"""The sandbox model (simulation): a deterministic rule engine that plays Claude.

It is not an AI. `AnthropicServer` answers with it when no scripted answer is queued,
so the demo and the end-to-end tests get plausible, repeatable proposals. Everything
it writes says "sandbox model (simulation)"; the server's `model` field still echoes
the model the request asked for.

PROMPT CONTRACT (the project's prompt builder follows this; keep both in step)
===============================================================================
The model reads the text of every `user` message (string content and `text` blocks),
first deletes every `<logs ...>...</logs>` span (untrusted log context: nothing inside
it is read, so instructions or fake sections planted in logs have no effect; the prompt
builder must make sure log text cannot contain a literal `</logs>`), then takes the
FIRST occurrence of each section below. A section is `<name>` or `<name attr=...>`,
its JSON, and `</name>`.

Which task: a `tool_choice` of `{"type": "tool", "name": ...}` naming one of the two
tools decides; otherwise an offered `submit_analysis` tool is used when an `<issues>`
section is present, else an offered `submit_verdict` tool when a `<recheck>` section
is present; otherwise (or with `tool_choice` `none`) the answer is plain text saying it
is the sandbox model. A tool answer is exactly one `tool_use` block, no text.

Analysis (`submit_analysis`)
    <catalog>[{"key", "description", "min_risk", "parameters": JSON schema}, ...]</catalog>
    <issues>[{"fingerprint", "host", "check", "subject", "value", "threshold",
              "severity", "labels": {...}}, ...]</issues>
    <context>{"top_cpu": [{"host", "process", "value"}, ...]}</context>   (optional)
  A grouped issue entry {"group": true, "hosts": [...], "fingerprint_pattern":
  "<host>|check|subject", "check", "subject", "severity", ...} stands for one issue per
  listed host, its fingerprint the pattern with `<host>` replaced by that host.
  Tool input: {"summary": str,
               "actions": [{"catalog_key", "host", "parameters", "risk", "reason",
                            "expected_outcome", "fingerprints": [str]}],
               "manual_issues": [{"host", "problem", "severity", "recommendation",
                                  "fingerprints": [str]}],
               "no_action_needed": []}
  Every issue ends up in exactly one of `actions` and `manual_issues` (each manual issue
  names its issue's fingerprint); the sandbox model never says "no action needed".
  Rules (`RULES`, by the issue's `check`):
    failed_unit, inactive_unit -> restart_unit {"unit": subject}          risk low
    disk                        -> free_disk {"mountpoint": subject}       risk low
    clock_sync                  -> restart_time_sync
                                   {"unit": "systemd-timesyncd.service"}  risk low
    cpu                         -> restart_process {"process": name}       risk medium
        name = labels["process"], else labels["groupname"], else the subject when it
        is not a generic word ("", -, cpu, total, all, node, system), else the highest
        `value` entry of `<context>` top_cpu for that host; no name -> manual issue
    memory, io_pressure, host_down, any other check -> manual issue
  An action is proposed only when its catalog key is in `<catalog>`; otherwise the
  issue becomes a manual issue that names the missing key. Risk is the rule's risk
  raised to the catalog entry's `min_risk`. Issues mapping to the same (host, key,
  target) give ONE action whose `fingerprints` lists each issue's fingerprint, in
  issue order. Manual issues keep the issue's severity (default "medium").
  A missing or unparsable `<catalog>`/`<issues>` gives no actions and no manual
  issues (so the project posts every issue as not addressed), and a summary that says
  which section could not be read.

Verification (`submit_verdict`)
    <recheck>{"still_breaching": true|false|null, "data_points": int, ...}</recheck>
    <job>{"state": "successful"|"failed"|"error"|"canceled"|"pending"|"running"}</job>
  Tool input: {"verdict": "effective"|"ineffective"|"inconclusive", "explanation": str}
  Rules, first match wins ("data" means data_points > 0 and still_breaching not null):
    data and not still breaching             -> effective   (even if the job failed)
    job state failed, error or canceled      -> ineffective
    data and still breaching                 -> ineffective
    anything else (no data, missing section) -> inconclusive
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

SIMULATION = "sandbox model (simulation)"
ANALYSIS_TOOL = "submit_analysis"
VERDICT_TOOL = "submit_verdict"
RISKS = ("low", "medium", "high")
FAILED_JOB_STATES = frozenset({"failed", "error", "canceled"})
GENERIC_CPU_SUBJECTS = frozenset({"", "-", "cpu", "total", "all", "node", "system"})

Issue = dict[str, Any]
Context = dict[str, Any]


# --- the rule table -----------------------------------------------------------------
def _subject(issue: Issue, context: Context) -> str | None:
    return str(issue.get("subject") or "") or None


def _time_sync_unit(issue: Issue, context: Context) -> str | None:
    # Debian's default time-sync daemon; the issue does not say which one the host runs.
    return "systemd-timesyncd.service"


def _process(issue: Issue, context: Context) -> str | None:
    labels = issue.get("labels") if isinstance(issue.get("labels"), dict) else {}
    for name in (labels.get("process"), labels.get("groupname")):
        if name:
            return str(name)
    subject = str(issue.get("subject") or "")
    if subject.lower() not in GENERIC_CPU_SUBJECTS and subject != issue.get("host"):
        return subject
    entries = [
        e
        for e in context.get("top_cpu") or []
        if isinstance(e, dict) and e.get("host") == issue.get("host") and e.get("process")
    ]
    if not entries:
        return None
    top = max(entries, key=lambda e: _number(e.get("value")))
    return str(top["process"])


@dataclass(frozen=True)
class Rule:
    """How one check is remedied: a catalog job for a target, or advice for a person."""

    recommendation: str  # used whenever the issue ends up a manual issue
    catalog_key: str | None = None  # None: always a manual issue
    parameter: str = ""  # the job parameter that receives the target
    target: Callable[[Issue, Context], str | None] = _subject
    risk: str = "low"
    expected_outcome: str = ""


RULES: dict[str, Rule] = {
    "failed_unit": Rule(
        "inspect the unit's journal and fix its configuration",
        "restart_unit",
        "unit",
        risk="low",
        expected_outcome="unit {target} is active again and stays up",
    ),
    "inactive_unit": Rule(
        "start the unit and find out why it stopped",
        "restart_unit",
        "unit",
        risk="low",
        expected_outcome="unit {target} is active again and stays up",
    ),
    "disk": Rule(
        "free space by hand or grow the filesystem",
        "free_disk",
        "mountpoint",
        risk="low",
        expected_outcome="usage of {target} drops below the threshold",
    ),
    "clock_sync": Rule(
        "check the host's time sources and its time-sync daemon",
        "restart_time_sync",
        "unit",
        target=_time_sync_unit,
        risk="low",
        expected_outcome="the clock is synchronised again ({target} restarted)",
    ),
    "cpu": Rule(
        "find the process that uses the CPU and decide whether to stop it",
        "restart_process",
        "process",
        target=_process,
        risk="medium",
        expected_outcome="CPU use on the host falls below the threshold after {target} restarts",
    ),
    "memory": Rule("find the process that holds the memory; consider more RAM or limits"),
    "io_pressure": Rule("find the workload that saturates the disks and reschedule it"),
    "host_down": Rule("check the host's power, network and console; it does not answer"),
}
_UNKNOWN_CHECK = Rule("investigate by hand; no rule covers this check")


# --- entry point --------------------------------------------------------------------
def respond(request: dict[str, Any]) -> list[dict[str, Any]]:
    """The model's content blocks for a Messages API request body."""
    text = _prompt_text(request.get("messages") or [])
    offered = {t.get("name") for t in request.get("tools") or [] if isinstance(t, dict)}
    choice = request.get("tool_choice") or {}
    task: str | None = None
    if choice.get("type") == "tool" and choice.get("name") in (ANALYSIS_TOOL, VERDICT_TOOL):
        task = choice["name"]
    elif choice.get("type") != "none":
        if ANALYSIS_TOOL in offered and section(text, "issues") is not None:
            task = ANALYSIS_TOOL
        elif VERDICT_TOOL in offered and section(text, "recheck") is not None:
            task = VERDICT_TOOL
    if task == ANALYSIS_TOOL:
        return [_tool_use(ANALYSIS_TOOL, analyse(text))]
    if task == VERDICT_TOOL:
        return [_tool_use(VERDICT_TOOL, verify(text))]
    return [
        {
            "type": "text",
            "text": f"This is the {SIMULATION}, not Claude. It answers only the "
            f"{ANALYSIS_TOOL} and {VERDICT_TOOL} tool calls of the remediation prompt.",
        }
    ]


def _tool_use(name: str, tool_input: dict[str, Any]) -> dict[str, Any]:
    # The server assigns the block id, as the API does.
    return {"type": "tool_use", "name": name, "input": tool_input}


# --- reading the prompt -------------------------------------------------------------
_LOGS = re.compile(r"<logs(?:\s[^>]*)?>.*?(?:</logs>|$)", re.S)


def _prompt_text(messages: list[Any]) -> str:
    parts: list[str] = []
    for message in messages:
        if not isinstance(message, dict) or message.get("role") != "user":
            continue
        content = message.get("content")
        if isinstance(content, str):
            parts.append(content)
        elif isinstance(content, list):
            parts.extend(
                str(b.get("text", ""))
                for b in content
                if isinstance(b, dict) and b.get("type") == "text"
            )
    # Untrusted log text is removed before any section is looked for.
    return _LOGS.sub("", "\n".join(parts))


def section(text: str, name: str) -> Any | None:
    """The JSON of the first `<name>` section of `text`; None if absent or not JSON."""
    match = re.search(rf"<{name}(?:\s[^>]*)?>(.*?)</{name}>", text, re.S)
    if match is None:
        return None
    try:
        return json.loads(match.group(1))
    except ValueError:
        return None


def _number(value: Any) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return -math.inf
    return number if not math.isnan(number) else -math.inf


# --- analysis -----------------------------------------------------------------------
def analyse(text: str) -> dict[str, Any]:
    """The `submit_analysis` input for a prompt (logs already removed)."""
    catalog, issues = section(text, "catalog"), section(text, "issues")
    context = section(text, "context")
    unreadable = [
        name
        for name, value in (("<catalog>", catalog), ("<issues>", issues))
        if not isinstance(value, list)
    ]
    if unreadable:
        return {
            "summary": f"{SIMULATION}: could not read {' and '.join(unreadable)}; "
            "no proposal made.",
            "actions": [],
            "manual_issues": [],
            "no_action_needed": [],
        }
    entries = {str(e.get("key")): e for e in catalog if isinstance(e, dict)}
    ctx = context if isinstance(context, dict) else {}
    actions: dict[tuple[str, str, str], dict[str, Any]] = {}
    manual: list[dict[str, Any]] = []
    issues = [one for entry in issues if isinstance(entry, dict) for one in _expand(entry)]
    for issue in issues:
        rule = RULES.get(str(issue.get("check")), _UNKNOWN_CHECK)
        target = rule.target(issue, ctx) if rule.catalog_key else None
        if rule.catalog_key is None:
            manual.append(_manual(issue, rule.recommendation))
        elif target is None:
            manual.append(
                _manual(issue, f"no {rule.parameter} could be named; {rule.recommendation}")
            )
        elif rule.catalog_key not in entries:
            manual.append(
                _manual(
                    issue,
                    f"the catalog has no '{rule.catalog_key}' job; {rule.recommendation}",
                )
            )
        else:
            key = (str(issue.get("host")), rule.catalog_key, target)
            if key in actions:
                actions[key]["fingerprints"].append(str(issue.get("fingerprint")))
            else:
                actions[key] = _action(issue, rule, target, entries[rule.catalog_key])
    hosts = {str(i.get("host")) for i in issues}
    return {
        "summary": f"{SIMULATION}: {len(issues)} issue(s) on {len(hosts)} host(s); "
        f"{len(actions)} action(s) proposed, {len(manual)} manual issue(s).",
        "actions": list(actions.values()),
        "manual_issues": manual,
        "no_action_needed": [],
    }


def _expand(entry: Issue) -> list[Issue]:
    """A grouped entry as one issue per listed host; any other entry as itself."""
    if not (entry.get("group") and isinstance(entry.get("hosts"), list)):
        return [entry]
    pattern = str(entry.get("fingerprint_pattern") or "<host>")
    return [
        {**entry, "host": str(host), "fingerprint": pattern.replace("<host>", str(host))}
        for host in entry["hosts"]
    ]


def _action(issue: Issue, rule: Rule, target: str, entry: dict[str, Any]) -> dict[str, Any]:
    floor = str(entry.get("min_risk") or "low")
    risk = max(rule.risk, floor, key=lambda r: RISKS.index(r) if r in RISKS else 0)
    return {
        "catalog_key": rule.catalog_key,
        "host": str(issue.get("host")),
        "parameters": {rule.parameter: target},
        "risk": risk,
        "reason": f"{_describe(issue)}; the catalog job '{rule.catalog_key}' is the "
        f"remedy for {issue.get('check')} ({SIMULATION})",
        "expected_outcome": rule.expected_outcome.format(target=target),
        "fingerprints": [str(issue.get("fingerprint"))],
    }


def _manual(issue: Issue, recommendation: str) -> dict[str, Any]:
    return {
        "host": str(issue.get("host")),
        "problem": _describe(issue),
        "severity": str(issue.get("severity") or "medium"),
        "recommendation": recommendation,
        "fingerprints": [str(issue.get("fingerprint"))],
    }


def _describe(issue: Issue) -> str:
    subject = f" {issue['subject']}" if issue.get("subject") not in (None, "", "-") else ""
    measured = ""
    if issue.get("value") is not None:
        measured = f": value {issue.get('value')} against threshold {issue.get('threshold')}"
    return f"{issue.get('check')}{subject} on {issue.get('host')}{measured}"


# --- verification -------------------------------------------------------------------
def verify(text: str) -> dict[str, Any]:
    """The `submit_verdict` input for a prompt (logs already removed)."""
    recheck = section(text, "recheck")
    job = section(text, "job")
    recheck = recheck if isinstance(recheck, dict) else {}
    state = str((job if isinstance(job, dict) else {}).get("state") or "unknown")
    breaching = recheck.get("still_breaching")
    points = recheck.get("data_points")
    has_data = isinstance(points, int) and points > 0 and isinstance(breaching, bool)
    if has_data and not breaching:
        verdict, why = "effective", f"the recheck cleared with {points} data point(s)"
        if state in FAILED_JOB_STATES:
            why += f" although the job ended {state}"
    elif state in FAILED_JOB_STATES:
        verdict, why = "ineffective", f"the job ended {state} and the recheck did not clear"
    elif has_data:
        verdict, why = "ineffective", f"still breaching over {points} data point(s)"
    else:
        verdict, why = "inconclusive", "the recheck returned no usable data"
    return {"verdict": verdict, "explanation": f"{SIMULATION}: {why} (job state: {state})."}
