"""An action addresses exactly the issues its parameters point at (core.vetting).

Property-style: seeded `random` loops over generated hosts with several issues of one
check, proposals with and without fingerprints, with matching and mismatching ones.
"""

from __future__ import annotations

import random
from collections import Counter
from typing import Any

import pytest
from pydantic import ValidationError

from core.catalog import DEFAULT_CATALOG, CatalogEntry, ParamSpec
from core.models import CheckName, Issue
from core.policy import Policy
from core.vetting import ProposedAction, Vetting
from tests.core import factories
from tests.core.factories import action, issue

# Limits out of the way: these tests are about binding, not about counting.
ROOMY = Policy(max_actions_per_cycle=10_000, max_actions_per_host=100, max_pending_approvals=10_000)
UNIT_CHECKS = (CheckName.FAILED_UNIT, CheckName.INACTIVE_UNIT)
UNITS = [f"{n}.service" for n in ("webapp", "fail2ban", "nginx", "cron", "redis", "ssh", "db")]
MOUNTS = ["/", "/var", "/home", "/srv", "/data"]
KEY_OF = {
    CheckName.FAILED_UNIT: ("restart_unit", "unit"),
    CheckName.INACTIVE_UNIT: ("restart_unit", "unit"),
    CheckName.DISK: ("free_disk", "mountpoint"),
}


def vet(actions: list[dict[str, Any]], issues: list[Issue], policy: Policy = ROOMY) -> Vetting:
    return factories.vet(actions, issues, policy)


def proposal(key: str, host: str, params: dict[str, Any], fps: list[str]) -> dict[str, Any]:
    return action(key, host=host, **params) | {"parameters": params, "fingerprints": fps}


def fp(host: str, check: CheckName, subject: str) -> str:
    return f"{host}|{check.value}|{subject}"


# --- the case seen in production, verbatim ------------------------------------------------
def test_seen_case_restart_without_fingerprints_binds_only_its_unit() -> None:
    """`restart_unit {unit: webapp.service}` without fingerprints on a host that also had
    fail2ban.service inactive was bound to both unit issues; the restart of fail2ban was
    then rejected as a duplicate."""
    issues = [
        issue("app-01", CheckName.INACTIVE_UNIT, "webapp.service"),
        issue("app-01", CheckName.INACTIVE_UNIT, "fail2ban.service"),
    ]
    v = vet(
        [
            proposal("restart_unit", "app-01", {"unit": "webapp.service"}, []),
            proposal("restart_unit", "app-01", {"unit": "fail2ban.service"}, []),
        ],
        issues,
        policy=Policy(),  # the default limits: two actions per host are allowed
    )
    assert v.rejected == []
    webapp, fail2ban = v.approved
    assert webapp.fingerprints == ["app-01|inactive_unit|webapp.service"]
    assert [i.subject for i in webapp.issues] == ["webapp.service"]
    assert fail2ban.fingerprints == ["app-01|inactive_unit|fail2ban.service"]
    assert webapp.action_id != fail2ban.action_id


# --- generated hosts ----------------------------------------------------------------------
def generated_host(rng: random.Random, host: str) -> list[Issue]:
    """1–5 unit issues (a unit may be both failed and inactive) and 0–3 disk issues."""
    issues = []
    for unit in rng.sample(UNITS, rng.randint(1, 5)):
        checks = rng.choice([[CheckName.FAILED_UNIT], [CheckName.INACTIVE_UNIT], UNIT_CHECKS])
        issues += [issue(host, c, unit) for c in checks]
    issues += [
        issue(host, CheckName.DISK, m, value=97.0) for m in rng.sample(MOUNTS, rng.randint(0, 3))
    ]
    if rng.random() < 0.3:
        issues.append(issue(host, CheckName.CPU, "-", value=99.0))
    return issues


def test_generated_hosts_each_action_addresses_exactly_its_subject() -> None:
    rng = random.Random(20261126)
    seen: Counter[str] = Counter()
    for round_ in range(300):
        hosts = [f"h{round_}-{n}" for n in range(rng.randint(1, 4))]
        issues = [i for h in hosts for i in generated_host(rng, h)]
        proposals, expect = [], []
        # one proposal per (host, entry, subject); fingerprints none, right, partial,
        # mismatching (another subject's issue of the same host) or unknown
        targets = sorted(
            {(i.host, *KEY_OF[i.check], i.subject) for i in issues if i.check in KEY_OF}
        )
        for host, key, param, subject in targets:
            bound = sorted(
                i.fingerprint
                for i in issues
                if i.host == host and i.subject == subject and KEY_OF.get(i.check, ("",))[0] == key
            )
            # any other issue of the host: another subject, or a check the entry does not fix
            others = sorted(i.fingerprint for i in issues if i.host == host)
            others = [f for f in others if f not in bound]
            mode = rng.choice(["none", "right", "partial", "mismatch", "unknown"])
            if mode == "mismatch" and not others:
                mode = "none"
            if mode == "mismatch":
                fps = [*bound[: rng.randint(0, 1)], rng.choice(others)]
            else:
                fps = {
                    "none": [],
                    "right": bound,
                    "partial": bound[:1],
                    "unknown": [fp(host, CheckName.FAILED_UNIT, "ghost.service")],
                }[mode]
            proposals.append(proposal(key, host, {param: subject}, fps))
            expect.append((mode, bound, fps))
            seen[mode] += 1
            seen["several of one check"] += sum(
                1 for i in issues if i.host == host and KEY_OF.get(i.check, ("",))[0] == key
            ) > len(bound)
        order = list(range(len(proposals)))
        rng.shuffle(order)
        v = vet([proposals[n] for n in order], issues)

        approved = {
            (a.host, a.catalog_key, next(iter(a.parameters.values()))): a for a in v.approved
        }
        rejected = {
            (r.action.host, r.action.catalog_key, next(iter(r.action.parameters.values()))): r
            for r in v.rejected
        }
        assert len(approved) + len(rejected) == len(proposals)
        for (host, key, _, subject), (mode, bound, fps) in zip(targets, expect, strict=True):
            ident = (host, key, subject)
            if mode in ("none", "right", "partial"):
                assert ident in approved, (round_, ident, mode, rejected.get(ident))
                a = approved[ident]
                # exactly the issues whose subject equals the from_subject parameter
                assert sorted(a.fingerprints) == bound, (round_, ident, mode)
                assert sorted(i.fingerprint for i in a.issues) == bound
                assert {i.subject for i in a.issues} == {subject}
                assert {i.host for i in a.issues} == {host}
            elif mode == "mismatch":
                reason = rejected[ident].reason
                wrong = [f for f in fps if f not in bound]
                assert reason.startswith("fingerprints disagree with the parameters"), reason
                assert wrong[0] in reason and repr(subject) in reason, reason
            else:
                assert rejected[ident].reason.startswith("fingerprints not among"), rejected[
                    ident
                ].reason
        # no issue is claimed by two approved actions
        claimed = [f for a in v.approved for f in a.fingerprints]
        assert len(claimed) == len(set(claimed))
    # the generator really covered every kind of proposal, on crowded hosts
    assert min(seen.values()) >= 100 and len(seen) == 6, seen


def test_two_units_on_one_host_are_both_approved_in_any_order() -> None:
    rng = random.Random(7)
    for _ in range(200):
        units = rng.sample(UNITS, rng.randint(2, 5))
        issues = [issue("web-07", rng.choice(UNIT_CHECKS), u) for u in units]
        chosen = rng.sample(units, 2)
        with_fps = [rng.random() < 0.5 for _ in chosen]
        acts = [
            proposal(
                "restart_unit",
                "web-07",
                {"unit": u},
                [i.fingerprint for i in issues if i.subject == u] if w else [],
            )
            for u, w in zip(chosen, with_fps, strict=True)
        ]
        v = vet(acts, issues, policy=Policy())
        assert v.rejected == [], [r.reason for r in v.rejected]
        assert [a.issues[0].subject for a in v.approved] == chosen
        assert all(len(a.issues) == 1 for a in v.approved)


def test_mismatched_fingerprint_is_rejected_naming_the_mismatch() -> None:
    issues = [
        issue("web-02", CheckName.FAILED_UNIT, "nginx.service"),
        issue("web-02", CheckName.FAILED_UNIT, "redis.service"),
    ]
    v = vet(
        [proposal("restart_unit", "web-02", {"unit": "nginx.service"}, [issues[1].fingerprint])],
        issues,
    )
    [r] = v.rejected
    assert r.reason == (
        "fingerprints disagree with the parameters: unit='nginx.service' points at "
        "['web-02|failed_unit|nginx.service'], but the fingerprints name "
        "['web-02|failed_unit|redis.service']"
    )
    assert v.approved == []
    assert v.manual_issues[0].problem.endswith(r.reason)


def test_fingerprint_of_a_check_the_entry_does_not_fix_is_a_disagreement() -> None:
    issues = [issue("web-02"), issue("web-02", CheckName.CPU, "-", value=99.0)]
    v = vet(
        [
            proposal(
                "restart_unit", "web-02", {"unit": "nginx.service"}, [i.fingerprint for i in issues]
            )
        ],
        issues,
    )
    [r] = v.rejected
    assert r.reason.startswith("fingerprints disagree with the parameters")
    assert "web-02|cpu|-" in r.reason


def test_a_subject_with_two_issues_binds_both() -> None:
    issues = [
        issue("web-02", CheckName.FAILED_UNIT, "nginx.service"),
        issue("web-02", CheckName.INACTIVE_UNIT, "nginx.service"),
        issue("web-02", CheckName.FAILED_UNIT, "cron.service"),
    ]
    [a] = vet([proposal("restart_unit", "web-02", {"unit": "nginx.service"}, [])], issues).approved
    assert a.fingerprints == [
        "web-02|failed_unit|nginx.service",
        "web-02|inactive_unit|nginx.service",
    ]


# --- entries without a from_subject parameter ---------------------------------------------
SCRIPTED = CatalogEntry(
    key="scripted",
    runner="awx",
    template_id=30,
    description="A scripted job that names no unit.",
    addresses=[CheckName.FAILED_UNIT],
)
WITH_SCRIPTED = ROOMY.model_copy(update={"catalog": (*DEFAULT_CATALOG, SCRIPTED)})


def test_entry_without_binding_takes_the_single_issue_or_asks_for_fingerprints() -> None:
    rng = random.Random(99)
    for _ in range(200):
        units = rng.sample(UNITS, rng.randint(1, 5))
        issues = [issue("web-03", CheckName.FAILED_UNIT, u) for u in units]
        issues.append(issue("web-03", CheckName.DISK, "/var", value=97.0))  # not its check
        named = rng.sample(issues[:-1], rng.randint(0, len(units)))
        v = vet(
            [proposal("scripted", "web-03", {}, [i.fingerprint for i in named])],
            issues,
            policy=WITH_SCRIPTED,
        )
        if named:
            [a] = v.approved
            assert a.fingerprints == [i.fingerprint for i in named]
        elif len(units) == 1:
            [a] = v.approved
            assert a.fingerprints == [issues[0].fingerprint]
        else:
            [r] = v.rejected
            assert r.reason.startswith("ambiguous: 'scripted' could address any of")
            assert "name their fingerprints" in r.reason
            assert all(i.fingerprint in r.reason for i in issues[:-1])


def test_entry_without_binding_rejects_a_fingerprint_of_another_check() -> None:
    issues = [issue("web-03"), issue("web-03", CheckName.DISK, "/var", value=97.0)]
    v = vet(
        [proposal("scripted", "web-03", {}, [issues[1].fingerprint])],
        issues,
        policy=WITH_SCRIPTED,
    )
    [r] = v.rejected
    assert r.reason == (
        "fingerprints disagree with the entry: 'scripted' does not address "
        "['web-03|disk|/var'] (it addresses failed_unit)"
    )


# --- entries that fix everything of their checks on the host ------------------------------
def test_reboot_claims_every_issue_of_its_checks_on_the_host() -> None:
    issues = [
        issue("web-04", CheckName.FAILED_UNIT, "nginx.service"),
        issue("web-04", CheckName.FAILED_UNIT, "cron.service"),
        issue("web-04", CheckName.CPU, "-", value=99.0),
        issue("web-04", CheckName.DISK, "/var", value=97.0),  # a reboot does not free disk
    ]
    for fps in ([], [issues[0].fingerprint]):
        [a] = vet(
            [proposal("reboot_host", "web-04", {}, fps) | {"risk": "medium"}], issues
        ).approved
        assert a.fingerprints == [i.fingerprint for i in issues[:3]]
    v = vet(
        [proposal("reboot_host", "web-04", {}, [issues[3].fingerprint]) | {"risk": "medium"}],
        issues,
    )
    assert v.rejected[0].reason.startswith("fingerprints disagree with the entry: 'reboot_host'")


def test_a_reboot_after_a_restart_on_the_same_host_is_a_duplicate_naming_the_overlap() -> None:
    """The reboot touches the unit the restart already addresses: running both would
    fight over it, so the later one is refused, saying which issue they share."""
    issues = [issue("web-04", CheckName.FAILED_UNIT, u) for u in ("nginx.service", "x.service")]
    v = vet(
        [
            proposal("restart_unit", "web-04", {"unit": "nginx.service"}, []),
            proposal("reboot_host", "web-04", {}, [issues[1].fingerprint]) | {"risk": "medium"},
        ],
        issues,
    )
    assert [a.catalog_key for a in v.approved] == ["restart_unit"]
    assert v.rejected[0].reason == (
        "duplicate: another proposed action already addresses ['web-04|failed_unit|nginx.service']"
    )


def test_only_the_reboot_claims_the_whole_host_in_the_default_catalog() -> None:
    assert [e.key for e in DEFAULT_CATALOG if e.addresses_all_on_host] == ["reboot_host"]


def test_whole_host_entry_cannot_also_bind_a_subject() -> None:
    with pytest.raises(ValidationError, match="cannot be combined with from_subject"):
        CatalogEntry(
            key="odd",
            runner="awx",
            template_id=1,
            description="Restart a unit, claiming the host.",
            parameters={"unit": ParamSpec(from_subject=True)},
            addresses_all_on_host=True,
        )


def test_proposed_action_fingerprints_must_be_its_issues() -> None:
    [a] = vet([action()], [issue()]).approved
    data = a.model_dump(mode="json")
    with pytest.raises(ValidationError, match="fingerprints must be those of its issues"):
        ProposedAction.model_validate(data | {"fingerprints": ["web-02|failed_unit|cron.service"]})
    with pytest.raises(ValidationError, match="at least one issue"):
        ProposedAction.model_validate(data | {"issues": [], "fingerprints": []})
    other = issue("web-03").model_dump(mode="json")
    with pytest.raises(ValidationError, match="issues of another host"):
        ProposedAction.model_validate(
            data | {"issues": [other], "fingerprints": ["web-03|failed_unit|nginx.service"]}
        )
