"""The cycle's closing summary and the escalation of issues out of attempts."""

from __future__ import annotations

from datetime import timedelta

from channels.discord_render import cycle_summary_embed, escalation_embed
from core.policy import Policy
from core.records import ActionRecord, ActionStatus, Decision, JobRecord
from core.summary import (
    AttemptDetail,
    cycle_summary_markdown,
    cycle_summary_rows,
    exhausted,
)
from core.vetting import AttemptRecord
from tests.core.factories import NOW, approval_request, issue
from tests.core.test_verify import proposed

T = timedelta(seconds=1)


def record(status: ActionStatus, *, job: str | None = "successful", action_id: str = ""):
    a = proposed()
    a = a.model_copy(update={"action_id": action_id or a.action_id})
    return ActionRecord(
        proposal=a,
        status=status,
        flow_run_id="fr",
        created_at=NOW,
        updated_at=NOW + 40 * T,
        request=approval_request(a, NOW + 300 * T, requested_at=NOW + 1 * T),
        decision=Decision(
            action_id=a.action_id,
            decision="approve" if job else "reject",
            decider="alice",
            via="discord",
            intended_at=NOW + 5 * T,
            applied_at=NOW + 6 * T,
        ),
        job=JobRecord(
            action_id=a.action_id,
            runner="awx",
            template="10",
            marker="m",
            intent_at=NOW + 7 * T,
            job_id="42",
            launched_at=NOW + 8 * T,
            finished_at=NOW + 11 * T,
            state=job,
        )
        if job
        else None,
    )


def test_rows_carry_decision_job_verdict_and_durations() -> None:
    done = record(ActionStatus.FINISHED)
    rejected = record(ActionStatus.REJECTED, job=None, action_id="act-other")
    rows = cycle_summary_rows([done, rejected], {done.proposal.action_id: "effective"})
    assert rows[0] == {
        "action": "restart_unit",
        "host": "web-02",
        "status": "finished",
        "decision": "approve by alice (discord)",
        "job": "successful",
        "verdict": "effective",
        "decision_seconds": "5",
        "job_seconds": "3",
        "total_seconds": "40",
    }
    assert rows[1]["job"] == "not launched" and rows[1]["verdict"] == "-"
    assert rows[1]["job_seconds"] == "-" and rows[1]["decision"] == "reject by alice (discord)"


def test_summary_embed_and_markdown() -> None:
    done = record(ActionStatus.FINISHED)
    rows = cycle_summary_rows([done, done], {done.proposal.action_id: "ineffective"})
    e = cycle_summary_embed("c1", rows)
    assert e.title == "🏁 Workflow complete: 2 action(s) of this cycle ended"
    assert e.description == "Verdicts: 2 ineffective." and e.footer == "cycle c1"
    assert e.fields[0].name == "restart_unit on web-02"
    assert "job successful (3 s); verdict **ineffective**" in e.fields[0].value
    md = cycle_summary_markdown("c1", rows)
    assert md.startswith("# Cycle `c1` complete")
    assert (
        "| `restart_unit` | web-02 | finished | approve by alice (discord) | successful | "
        "ineffective | 5 | 3 | 40 |" in md
    )


def attempt(minutes_ago: float, counts: bool = True, outcome: str = "ineffective"):
    return AttemptRecord(at=NOW - timedelta(minutes=minutes_ago), outcome=outcome, counts=counts)


def test_exhausted_follows_the_vetting_rule() -> None:
    policy = Policy(attempts_per_window=2, attempt_window_seconds=3600)
    history = {
        "a": [attempt(50), attempt(10)],  # two counted in the hour: out
        "b": [attempt(90), attempt(10)],  # one of them outside the window
        "c": [attempt(20), attempt(10, counts=False, outcome="effective")],
        "d": [attempt(30), attempt(5, outcome="relapse")],  # a relapse counts
    }
    out = exhausted(history, policy, NOW)
    assert sorted(out) == ["a", "d"] and len(out["a"]) == 2


def test_escalation_is_a_manual_issue_with_the_history() -> None:
    policy = Policy(attempts_per_window=2, attempt_window_seconds=7200)
    history = [
        AttemptDetail(
            at=NOW - timedelta(minutes=40),
            outcome="ineffective",
            counts=True,
            action_id="act-1",
            catalog_key="restart_unit",
            explanation="still failed after restart",
        ),
        AttemptDetail(
            at=NOW - timedelta(minutes=10),
            outcome="failed",
            counts=True,
            action_id="act-2",
            catalog_key="restart_unit",
            explanation="job failed",
        ),
    ]
    e = escalation_embed(issue(), history, policy, cycle_id="c9")
    assert e.title == "🆘 Manual issue: failed_unit nginx.service on web-02 — out of attempts"
    assert "2 failed or ineffective attempt(s) in the last 2 h (limit 2)" in e.description
    fields = {f.name: f.value for f in e.fields}
    assert fields["Issue"] == "`web-02|failed_unit|nginx.service`"
    assert "restart_unit     ineffective  still failed after restart" in fields["Attempt history"]
    assert "failed       job failed" in fields["Attempt history"]
    assert e.footer == "cycle c9"
