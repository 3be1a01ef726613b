"""Claude proposes, policy disposes: every proposed action is vetted here.

An action survives only if its catalog key exists, its parameters are valid for the
entry, its host has a current issue the entry addresses, is inside the entry's target
scope, is not protected or in maintenance, its issues are not in cooldown or out of
attempts, and the cycle, host and approval-capacity limits allow it. Its risk is never
below the catalog's floor. Every rejected action becomes a manual issue that says why.

Which issues an action addresses is derived from what it will touch, never from every
issue of the entry's checks on the host. The candidates are the host's current issues
of the entry's checks (`addresses`); of those the action addresses:

1. with a `from_subject` parameter given: the issues whose subject equals its value (a
   restart of `webapp.service` addresses that unit's failed and/or inactive issue,
   never `fail2ban.service`'s). Fingerprints the model gives must be among them: any
   other is a rejection, "fingerprints disagree with the parameters", naming both sides.
   Naming only some of them is fine: the action still touches, and is verified on, all.
2. for an entry marked `addresses_all_on_host` (a reboot): every candidate. Fingerprints,
   if given, must be candidates ("fingerprints disagree with the entry" otherwise).
3. for any other entry: the fingerprints the model gives (each must be a candidate);
   without fingerprints, the only candidate when there is exactly one, and when there
   are several a rejection as ambiguous that asks for fingerprints — guessing would
   claim, and verify on, issues the job may not touch.

Fingerprints that are not current issues of the host are rejected before any of this.
Two approved actions never share an issue: the later one is a duplicate.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from pydantic import Field, model_validator

from core.analysis import ManualIssue, ModelAction
from core.catalog import CatalogEntry, Runner
from core.models import Frozen, Issue, Risk
from core.policy import Policy


class AttemptRecord(Frozen):
    at: datetime
    outcome: str
    counts: bool = Field(description="Counts toward the attempt limit (failed/ineffective).")


class ProposedAction(Frozen):
    """An action that passed policy and may now be put to humans."""

    action_id: str
    cycle_id: str
    host: str
    catalog_key: str
    parameters: dict[str, Any]
    risk: Risk
    model_risk: Risk
    reason: str
    expected_outcome: str
    fingerprints: list[str]
    issues: list[Issue]
    runner: Runner
    template: str
    max_job_seconds: int
    deadline_default_may_run: bool
    policy_hash: str
    proposed_at: datetime
    notes: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _bound(self) -> ProposedAction:
        # Verification re-checks `issues`, the ledger records `fingerprints`: they must
        # be one and the same set, on this host, and never empty (nothing to verify on
        # would read as "all cleared").
        if not self.issues:
            raise ValueError("an action addresses at least one issue")
        if self.fingerprints != [i.fingerprint for i in self.issues]:
            raise ValueError("fingerprints must be those of its issues, in order")
        if any(i.host != self.host for i in self.issues):
            raise ValueError(f"issues of another host than {self.host!r}")
        return self


class RejectedAction(Frozen):
    action: ModelAction
    reason: str


class Vetting(Frozen):
    approved: list[ProposedAction]
    rejected: list[RejectedAction]

    @property
    def manual_issues(self) -> list[ManualIssue]:
        return [
            ManualIssue(
                host=r.action.host,
                problem=f"Proposed action {r.action.catalog_key!r} was not allowed: {r.reason}",
                severity="warning",
                recommendation=r.action.reason[:500] or "Review the issue by hand.",
                source="capacity" if r.reason.startswith("approval capacity") else "policy",
            )
            for r in self.rejected
        ]

    def rejection_counts(self) -> dict[str, int]:
        counts: dict[str, int] = defaultdict(int)
        for r in self.rejected:
            counts[r.reason.split(":")[0].split(" (")[0]] += 1
        return dict(counts)


def action_id(cycle_id: str, key: str, host: str, fps: Sequence[str], params: Mapping) -> str:
    raw = json.dumps([cycle_id, key, host, sorted(fps), params], sort_keys=True, default=str)
    return "act-" + hashlib.sha256(raw.encode()).hexdigest()[:16]


def _attempt_block(
    fps: Sequence[str],
    history: Mapping[str, Sequence[AttemptRecord]],
    policy: Policy,
    now: datetime,
) -> str | None:
    window = timedelta(seconds=policy.attempt_window_seconds)
    cooldown = timedelta(seconds=policy.cooldown_seconds)
    for fp in fps:
        records = history.get(fp, ())
        counted = [r for r in records if r.counts and now - r.at < window]
        if len(counted) >= policy.attempts_per_window:
            return (
                f"out of attempts ({len(counted)} failed or ineffective in the last "
                f"{policy.attempt_window_seconds // 3600} h) for {fp}"
            )
        recent = [r.at for r in records if now - r.at < cooldown]
        if recent:
            return f"in cooldown until {(max(recent) + cooldown).isoformat()} for {fp}"
    return None


def _listed(fps: Sequence[str], limit: int = 10) -> str:
    shown = list(fps[:limit])
    return f"{shown}" + (f" and {len(fps) - limit} more" if len(fps) > limit else "")


def _outside(entry: CatalogEntry, named: Sequence[str], candidates: Sequence[Issue]) -> str | None:
    """The rejection when fingerprints name issues the entry does not address."""
    own = {i.fingerprint for i in candidates}
    outside = [fp for fp in named if fp not in own]
    if not outside:
        return None
    checks = ", ".join(c.value for c in entry.addresses)
    return (
        f"fingerprints disagree with the entry: {entry.key!r} does not address "
        f"{_listed(outside)} (it addresses {checks})"
    )


def _addressed(
    action: ModelAction, entry: CatalogEntry, candidates: Sequence[Issue]
) -> tuple[str | None, list[Issue]]:
    """The issues the action addresses, by the rules of the module docstring."""
    named = list(dict.fromkeys(action.fingerprints))
    params = action.parameters
    bound = {n: params[n] for n in entry.subject_parameters if n in params}
    if bound:
        values = set(bound.values())
        addressed = [i for i in candidates if i.subject in values]
        own = [i.fingerprint for i in addressed]
        other = [fp for fp in named if fp not in own]
        if other:
            pointing = ", ".join(f"{n}={v!r}" for n, v in bound.items())
            return (
                f"fingerprints disagree with the parameters: {pointing} points at "
                f"{_listed(own)}, but the fingerprints name {_listed(other)}"
            ), []
        return None, addressed
    outside = _outside(entry, named, candidates)
    if outside:
        return outside, []
    if entry.addresses_all_on_host:
        return None, list(candidates)
    if named:
        by_fp = {i.fingerprint: i for i in candidates}
        return None, [by_fp[fp] for fp in named]
    if len(candidates) == 1:
        return None, list(candidates)
    return (
        f"ambiguous: {entry.key!r} could address any of {action.host}'s "
        f"{len(candidates)} issues {_listed([i.fingerprint for i in candidates])}; "
        "name their fingerprints"
    ), []


def _check_one(
    action: ModelAction,
    issues_by_host: Mapping[str, Sequence[Issue]],
    policy: Policy,
    history: Mapping[str, Sequence[AttemptRecord]],
    now: datetime,
) -> tuple[str | None, list[Issue]]:
    entry = policy.entry(action.catalog_key)
    if entry is None:
        return f"unknown catalog key {action.catalog_key!r}", []
    host_issues = issues_by_host.get(action.host)
    if not host_issues:
        return f"host {action.host!r} has no current issue", []
    if policy.protected(action.host):
        return f"host {action.host!r} is protected from every action", []
    window = policy.maintenance_for(action.host, now)
    if window is not None:
        return f"host {action.host!r} is in maintenance window {window.name!r}", []
    current = {i.fingerprint for i in host_issues}
    unknown = [fp for fp in action.fingerprints if fp not in current]
    if unknown:
        return f"fingerprints not among {action.host}'s current issues: {unknown[:3]}", []
    candidates = [i for i in host_issues if i.check in entry.addresses]
    if not candidates:
        return f"{entry.key!r} does not address any of {action.host}'s current issues", []
    # Parameters first: a from_subject value binds only once it is a valid candidate.
    problems = entry.validate_parameters(
        action.parameters, {i.subject for i in candidates}, action.host
    )
    if problems:
        return "invalid parameters: " + "; ".join(problems), []
    reason, addressed = _addressed(action, entry, candidates)
    if reason is not None:
        return reason, []
    labels: dict[str, str] = {}
    for i in addressed:
        labels.update(i.labels)
    if not entry.targets.allows(action.host, labels):
        return f"host {action.host!r} is outside the target scope of {entry.key!r}", []
    blocked = _attempt_block([i.fingerprint for i in addressed], history, policy, now)
    if blocked:
        return blocked, []
    return None, addressed


def vet_actions(
    actions: Sequence[ModelAction],
    issues: Sequence[Issue],
    *,
    policy: Policy,
    policy_hash: str,
    history: Mapping[str, Sequence[AttemptRecord]],
    pending_approvals: int,
    cycle_id: str,
    now: datetime,
    pending_suspended: int = 0,
) -> Vetting:
    """Check every proposed action against policy (see the module docstring). Approval
    capacity is counted by wait mode: `pending_approvals` hold a paused process each
    (`max_pending_approvals`), `pending_suspended` wait suspended, as database rows
    (`max_suspended_approvals`)."""
    issues_by_host: dict[str, list[Issue]] = defaultdict(list)
    for issue in issues:
        issues_by_host[issue.host].append(issue)
    approved: list[ProposedAction] = []
    rejected: list[RejectedAction] = []
    per_host: dict[str, int] = defaultdict(int)
    seen: set[tuple[str, str, str]] = set()
    claimed_fps: set[str] = set()
    capacity = {
        "pause": max(0, policy.max_pending_approvals - pending_approvals),
        "suspend": max(0, policy.max_suspended_approvals - pending_suspended),
    }
    admitted = {"pause": 0, "suspend": 0}
    for action in actions:
        reason, addressed = _check_one(action, issues_by_host, policy, history, now)
        fps = [i.fingerprint for i in addressed]
        ident = (
            action.catalog_key,
            action.host,
            json.dumps(action.parameters, sort_keys=True, default=str),
        )
        shared = [fp for fp in fps if fp in claimed_fps]
        if reason is None and (ident in seen or shared):
            reason = "duplicate: another proposed action already addresses " + (
                _listed(shared) if shared else "these issues"
            )
        if reason is None and len(approved) >= policy.max_actions_per_cycle:
            reason = f"over the per-cycle limit of {policy.max_actions_per_cycle} actions"
        if reason is None and per_host[action.host] >= policy.max_actions_per_host:
            reason = f"over the per-host limit of {policy.max_actions_per_host} actions"
        entry = policy.entry(action.catalog_key)
        risk = Risk.max(action.risk, entry.min_risk) if entry is not None else action.risk
        wait = policy.risk.level(risk).wait
        if reason is None and admitted[wait] >= capacity[wait]:
            reason = _capacity_reached(policy, wait)
        if reason is not None:
            rejected.append(RejectedAction(action=action, reason=reason))
            continue
        assert entry is not None
        admitted[wait] += 1
        notes = []
        if risk != action.risk:
            notes.append(
                f"risk raised from {action.risk.value} to {risk.value} "
                f"(catalog floor of {entry.key})"
            )
        seen.add(ident)
        claimed_fps.update(fps)
        per_host[action.host] += 1
        approved.append(
            ProposedAction(
                action_id=action_id(cycle_id, entry.key, action.host, fps, action.parameters),
                cycle_id=cycle_id,
                host=action.host,
                catalog_key=entry.key,
                parameters=dict(action.parameters),
                risk=risk,
                model_risk=action.risk,
                reason=action.reason,
                expected_outcome=action.expected_outcome,
                fingerprints=fps,
                issues=addressed,
                runner=entry.runner,
                template=entry.template,
                max_job_seconds=entry.max_job_seconds,
                deadline_default_may_run=entry.deadline_default_may_run,
                policy_hash=policy_hash,
                proposed_at=now,
                notes=notes,
            )
        )
    return Vetting(approved=approved, rejected=rejected)


def _capacity_reached(policy: Policy, wait: str) -> str:
    if wait == "suspend":
        return (
            f"approval capacity reached ({policy.max_suspended_approvals} actions may "
            "await approval suspended at once)"
        )
    return (
        f"approval capacity reached ({policy.max_pending_approvals} actions may "
        "await approval at once)"
    )
