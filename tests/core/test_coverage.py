"""Every issue accounted for: what covers each analysed issue, and when it counts as
reported."""

from __future__ import annotations

from core.analysis import ManualIssue, ModelAction, NoActionNeeded
from core.coverage import Coverage, cover_issues, rejections_as_manual
from core.models import CheckName
from core.policy import Policy
from core.vetting import Vetting
from tests.core.factories import issue, vet

POLICY = Policy()
NGINX = issue("web-02")  # web-02|failed_unit|nginx.service
SSH = issue("web-02", subject="ssh.service")
CRON = issue("web-01", subject="cron.service")
DISK = issue("db-01", CheckName.DISK, "/var")
ISSUES = [NGINX, SSH, CRON, DISK]


def _vet(*actions: ModelAction) -> Vetting:
    return vet(actions, ISSUES, POLICY, cycle_id="c")


def _restart(host: str, unit: str, fps: list[str]) -> ModelAction:
    return ModelAction(
        catalog_key="restart_unit", host=host, parameters={"unit": unit}, risk="low",
        fingerprints=fps,
    )  # fmt: skip


def _manual(host: str, *fps: str) -> ManualIssue:
    return ManualIssue(host=host, problem="look", fingerprints=list(fps))


def _labels(c: Coverage) -> dict[str, str]:
    return {x.issue.fingerprint: x.label for x in c.issues}


def test_each_issue_is_covered_by_its_action_manual_issue_or_no_action_entry() -> None:
    vetting = _vet(_restart("web-02", "nginx.service", [NGINX.fingerprint]))
    [act] = vetting.approved
    c = cover_issues(
        ISSUES,
        actions=vetting.approved,
        manual=[_manual("web-01", CRON.fingerprint)],
        no_action=[NoActionNeeded(fingerprints=[DISK.fingerprint], reason="cleanup runs at 3")],
    )
    assert _labels(c) == {
        NGINX.fingerprint: f"approval request {act.action_id}",
        SSH.fingerprint: "not addressed by the analysis",
        CRON.fingerprint: "manual issue",
        DISK.fingerprint: "no action needed: cleanup runs at 3",
    }
    assert c.unaddressed == [SSH]
    assert [(x.issue, x.no_action_reason) for x in c.no_action] == [(DISK, "cleanup runs at 3")]


def test_a_manual_issue_naming_no_fingerprint_covers_every_issue_of_its_host() -> None:
    c = cover_issues(ISSUES, actions=[], manual=[_manual("web-02")], no_action=[])
    assert [x.issue for x in c.issues if x.manual] == [NGINX, SSH]
    assert c.unaddressed == [CRON, DISK]


def test_a_manual_issue_naming_fingerprints_covers_only_those() -> None:
    c = cover_issues(ISSUES, actions=[], manual=[_manual("web-02", SSH.fingerprint)], no_action=[])
    assert [x.issue for x in c.issues if x.manual] == [SSH]
    assert NGINX in c.unaddressed


def test_fingerprints_of_no_current_issue_cover_nothing() -> None:
    c = cover_issues(
        [NGINX],
        actions=[],
        manual=[_manual("web-02", "web-02|failed_unit|gone.service")],
        no_action=[NoActionNeeded(fingerprints=["db-09|disk|/"], reason="fine")],
    )
    assert c.unaddressed == [NGINX]


def test_an_action_or_manual_issue_outranks_no_action_needed() -> None:
    vetting = _vet(_restart("web-02", "nginx.service", [NGINX.fingerprint]))
    says_fine = NoActionNeeded(fingerprints=[NGINX.fingerprint, CRON.fingerprint], reason="fine")
    c = cover_issues(
        [NGINX, CRON],
        actions=vetting.approved,
        manual=[_manual("web-01")],
        no_action=[says_fine],
    )
    assert c.no_action == [] and c.unaddressed == []


def test_the_first_no_action_entry_naming_an_issue_gives_its_reason() -> None:
    c = cover_issues(
        [NGINX],
        actions=[],
        manual=[],
        no_action=[
            NoActionNeeded(fingerprints=[NGINX.fingerprint], reason="first"),
            NoActionNeeded(fingerprints=[NGINX.fingerprint], reason="second"),
        ],
    )
    assert [x.no_action_reason for x in c.no_action] == ["first"]


def test_a_rejected_action_becomes_a_manual_issue_covering_what_it_named() -> None:
    vetting = _vet(
        _restart("web-02", "nginx.service; rm -rf /", [NGINX.fingerprint]),  # invalid
        ModelAction(catalog_key="run_shell", host="web-01", risk="low"),  # names nothing
    )
    manual = rejections_as_manual(vetting)
    assert [(m.host, m.fingerprints, m.source) for m in manual] == [
        ("web-02", [NGINX.fingerprint], "policy"),
        ("web-01", [], "policy"),
    ]
    c = cover_issues(ISSUES, actions=[], manual=manual, no_action=[])
    assert c.unaddressed == [SSH, DISK]  # web-02's other issue was not named


def test_only_what_people_saw_counts_as_reported() -> None:
    vetting = _vet(_restart("web-02", "nginx.service", [NGINX.fingerprint]))
    [act] = vetting.approved
    c = cover_issues(
        ISSUES,
        actions=vetting.approved,
        manual=[_manual("web-01")],
        no_action=[NoActionNeeded(fingerprints=[DISK.fingerprint], reason="fine")],
    )
    everything = c.reported(
        dispatched={act.action_id}, manual_posted=True, no_action_posted=True,
        unaddressed_posted=True,
    )  # fmt: skip
    assert everything == [i.fingerprint for i in ISSUES]
    nothing = c.reported(
        dispatched=set(), manual_posted=False, no_action_posted=False, unaddressed_posted=False
    )
    assert nothing == []
    only_messages = c.reported(
        dispatched=set(), manual_posted=True, no_action_posted=True, unaddressed_posted=False
    )
    assert only_messages == [CRON.fingerprint, DISK.fingerprint]


def test_an_issue_covered_twice_is_reported_when_either_reached_people() -> None:
    vetting = _vet(_restart("web-02", "nginx.service", [NGINX.fingerprint]))
    c = cover_issues([NGINX], actions=vetting.approved, manual=[_manual("web-02")], no_action=[])
    assert c.reported(
        dispatched=set(), manual_posted=True, no_action_posted=False, unaddressed_posted=False
    ) == [NGINX.fingerprint]
