"""Every issue accounted for: what covers each issue the cycle analysed, and whether
people have seen it.

After vetting, an issue is covered by
- an approval request: a vetted action that addresses its fingerprint;
- a manual issue (the model's, a policy rejection's, the prompt-budget notice) that names
  its fingerprint, or that names none and is on the issue's host;
- a "no action needed" entry that names it, with the model's reason — counted only when
  nothing above covers it (an approval request or a manual issue says more);
- else nothing: the answer did not address it, and it goes to a human as such.

An issue counts as reported only once what covers it reached people: its action was
dispatched, or the message that carries it was posted (`Coverage.reported`).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Sequence

from pydantic import Field

from core.analysis import ManualIssue, NoActionNeeded
from core.models import Frozen, Issue
from core.vetting import ProposedAction, Vetting


class Covered(Frozen):
    """One analysed issue and what covers it."""

    issue: Issue
    action_ids: list[str] = Field(default_factory=list)
    manual: bool = False
    no_action_reason: str | None = Field(
        default=None, description="The model's reason, when only 'no action needed' covers it."
    )

    @property
    def unaddressed(self) -> bool:
        return not self.action_ids and not self.manual and self.no_action_reason is None

    @property
    def label(self) -> str:
        """How the issue was accounted for, in a word or three (the cycle report)."""
        if self.action_ids:
            return "approval request " + ", ".join(self.action_ids)
        if self.manual:
            return "manual issue"
        if self.no_action_reason is not None:
            return "no action needed: " + self.no_action_reason
        return "not addressed by the analysis"


class Coverage(Frozen):
    issues: list[Covered] = Field(description="Every analysed issue, in the cycle's order.")

    @property
    def no_action(self) -> list[Covered]:
        """Issues only a "no action needed" covers (each named with its reason)."""
        return [c for c in self.issues if c.no_action_reason is not None]

    @property
    def unaddressed(self) -> list[Issue]:
        return [c.issue for c in self.issues if c.unaddressed]

    def reported(
        self,
        *,
        dispatched: Collection[str],
        manual_posted: bool,
        no_action_posted: bool,
        unaddressed_posted: bool,
    ) -> list[str]:
        """Fingerprints that something people can see covered: a dispatched action, or a
        posted message carrying them."""
        return [
            c.issue.fingerprint
            for c in self.issues
            if any(a in dispatched for a in c.action_ids)
            or (c.manual and manual_posted)
            or (c.no_action_reason is not None and no_action_posted)
            or (c.unaddressed and unaddressed_posted)
        ]


def rejections_as_manual(vetting: Vetting) -> list[ManualIssue]:
    """Vetting's manual issues, each naming the fingerprints its rejected action named
    (none: it covers its host's issues)."""
    return [
        m if m.fingerprints else m.model_copy(update={"fingerprints": list(r.action.fingerprints)})
        for m, r in zip(vetting.manual_issues, vetting.rejected, strict=True)
    ]


def cover_issues(
    issues: Sequence[Issue],
    *,
    actions: Sequence[ProposedAction],
    manual: Sequence[ManualIssue],
    no_action: Sequence[NoActionNeeded],
) -> Coverage:
    """What covers each of `issues` (see the module docstring). Pure."""
    by_action: dict[str, list[str]] = defaultdict(list)
    for a in actions:
        for fp in a.fingerprints:
            by_action[fp].append(a.action_id)
    named_manual = {fp for m in manual for fp in m.fingerprints}
    manual_hosts = {m.host for m in manual if not m.fingerprints}
    reasons: dict[str, str] = {}
    for entry in no_action:
        for fp in entry.fingerprints:
            reasons.setdefault(fp, entry.reason)  # the first entry naming it speaks
    covered = []
    for issue in issues:
        fp = issue.fingerprint
        ids = by_action.get(fp, [])
        is_manual = fp in named_manual or issue.host in manual_hosts
        covered.append(
            Covered(
                issue=issue,
                action_ids=ids,
                manual=is_manual,
                no_action_reason=None if ids or is_manual else reasons.get(fp),
            )
        )
    return Coverage(issues=covered)
