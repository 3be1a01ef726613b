"""Every parameter value the catalog allows renders in every message, report and artifact.

Values are generated for each type the catalog schema allows (string, integer, number,
boolean, enum), at the catalog's limits (4096-character strings, 64-bit and larger
integers, extreme and non-finite floats) and as untrusted text (Discord markup,
mentions, backticks, newlines). Each renderer must return Discord-valid embeds (or
Markdown) that show the value, and untrusted text only inside code spans or blocks.
"""

from __future__ import annotations

import json
import random
import re
import string
from datetime import timedelta
from typing import Any

import pytest

from channels import discord_listings as render
from channels.discord_fallback import FallbackEmbed, degrades, fallback_notices, render_or_plain
from channels.discord_render import approval_embed, embeds, reminder_embed, result_embed
from clients.discord import embeds_json
from core.analysis import ModelAction
from core.approval import approval_markdown
from core.approvers import Approvers
from core.messages import ApprovalCard, ProposalSummary, ResultCard
from core.models import CheckName
from core.params import code_span, inline, parameters_inline, parameters_json, value_text
from core.policy import RiskRegister, load_policy, policy_hash
from core.records import ActionRecord, ActionStatus, Decision, JobRecord
from core.report import ActionOutcome, CycleOutcome, CycleReport, cycle_markdown
from core.verify import action_report
from core.vetting import ProposedAction, vet_actions
from core.wire import Embed
from sandbox.discord_payload import check_message
from tests.core.factories import NOW, approval_request, issue, unit_recheck, verification

# --- generated values, per catalog type ---------------------------------------------------
UNTRUSTED = [
    "@everyone look <@123456789012345678> <@&987654321098765432> @here",
    "**bold** __under__ ~~strike~~ ||spoiler|| [click](https://evil.example) # heading",
    "tick ` and fence ``` inside ```text\nbreakout\n``` done",
    "line one\nline two\r\nline three\n\n- list item\n> quote",
    "",
    "🟢 ünïcödé 𝔘 \u200b zero-width",
]
MARKERS = ["@everyone", "@here", "<@123", "<@&98", "<@&1>", "||spoiler||", "](https://evil"]
STRING_MAX = 4096  # ParamSpec.max_length's upper bound


def _generated() -> dict[str, list[Any]]:
    rng = random.Random(21)
    alphabet = string.printable + "`*_~|<>@#🟢ü\u200b"
    strings = UNTRUSTED + [
        "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 300))) for _ in range(12)
    ]
    strings += ["x" * STRING_MAX, ("`@everyone\n" * 500)[:STRING_MAX]]
    integers = [0, 1, -1, 2**31, -(2**63), 2**64 + 1, 10**300]
    integers += [rng.randint(-(10**12), 10**12) for _ in range(8)]
    numbers = [0.0, -0.5, 3, 1e308, -1e-308, 5e-324, float("nan"), float("inf"), float("-inf")]
    numbers += [rng.uniform(-1e6, 1e6) for _ in range(8)]
    return {
        "s": strings,
        "i": integers,
        "n": numbers,
        "b": [True, False],
        "e": ["a`b", "<@&1> **x**", "plain"],
        "ei": [1, 2],
        "en": [2.5, -1],
    }


VALUES = _generated()
ENTRY = {
    "key": "typed_fix",
    "runner": "awx",
    "template_id": 30,
    "description": "A catalog entry with one parameter of every allowed type.",
    "addresses": ["failed_unit"],
    "parameters": {
        "s": {"type": "string", "max_length": STRING_MAX, "required": False},
        "i": {"type": "integer", "required": False},
        "n": {"type": "number", "required": False},
        "b": {"type": "boolean", "required": False},
        "e": {"type": "string", "enum": VALUES["e"], "required": False},
        "ei": {"type": "integer", "enum": VALUES["ei"], "required": False},
        "en": {"type": "number", "enum": VALUES["en"], "required": False},
    },
}
POLICY = load_policy({"catalog": [ENTRY]})
UNIT = issue()  # web-02|failed_unit|nginx.service


def proposed(params: dict[str, Any], reason: str = "unit failed") -> ProposedAction:
    vetting = vet_actions(
        [
            ModelAction(
                catalog_key="typed_fix",
                host="web-02",
                parameters=params,
                risk="low",
                reason=reason,
                expected_outcome="unit active",
                fingerprints=[UNIT.fingerprint],
            )
        ],
        [UNIT],
        policy=POLICY,
        policy_hash=policy_hash(POLICY),
        history={},
        pending_approvals=0,
        cycle_id="c1",
        now=NOW,
    )
    assert not vetting.rejected, vetting.rejected  # the catalog allows every value here
    [action] = vetting.approved
    return action


CASES = [(name, v) for name, values in VALUES.items() for v in values]
CASE_IDS = [f"{name}-{n}" for name, values in VALUES.items() for n in range(len(values))]
# One action holding the largest value of every type at once.
WIDEST = {"s": "`@everyone\n" * 372, "i": 10**300, "n": -1e-308, "b": True, "e": "a`b"}
WIDEST |= {"ei": 2, "en": 2.5}


# --- what every rendering must satisfy ----------------------------------------------------
def outside_code(text: str) -> str:
    """What Discord/Markdown shows as formatted text: code blocks and spans removed."""
    text = re.sub(r"```.*?```", "", text, flags=re.S)
    return re.sub(r"`[^`\n]*`", "", text)


def assert_discord_valid(embeds: list[Embed]) -> None:
    """Within Discord's per-embed limits as rendered, and accepted as the client sends it."""
    assert 1 <= len(embeds) <= 10
    for e in embeds:
        assert len(e.title or "") <= 256 and len(e.description or "") <= 4096
        assert len(e.footer or "") <= 2048 and len(e.fields) <= 25
        for f in e.fields:
            assert 0 < len(f.name) <= 256 and 0 < len(f.value) <= 1024, f
    assert check_message({"embeds": embeds_json(embeds)}, partial=False) is None


def texts(embeds: list[Embed]) -> str:
    return "\n".join(
        [e.title or "" for e in embeds]
        + [e.description or "" for e in embeds]
        + [f"{f.name}\n{f.value}" for e in embeds for f in e.fields]
    )


def assert_shown_and_inert(rendered: str, value: Any) -> None:
    """The value's head appears (as plain, code-span or JSON text), and nothing of
    untrusted text is markup."""
    text = value_text(value)
    escaped = json.dumps(text, ensure_ascii=False)[1:-1] if isinstance(value, str) else text
    forms = {text, inline(text), escaped, inline(escaped), text.replace("```", "ʼʼʼ")}
    heads = {f[:30] for f in forms}
    unescaped = rendered.replace("\\|", "|")  # a Markdown table cell escapes its pipes
    assert any(h in rendered or h in unescaped for h in heads), (heads, rendered[:500])
    shown = outside_code(rendered)
    for marker in MARKERS:
        if marker in text:
            assert marker not in shown, (marker, shown[:500])


# --- the renderers ------------------------------------------------------------------------
LEVEL = RiskRegister().low
DEADLINE = NOW + timedelta(minutes=5)
DECISION = Decision(
    action_id="x", decision="approve", decider="alice", via="discord", intended_at=NOW
)
VERIFICATION = verification("effective", unit_recheck(False, 0))


# The posted messages are rendered as the Discord adapter renders them.
def summary(actions: list[ProposedAction]) -> list[Embed]:
    return embeds(ProposalSummary(summary="two things", actions=actions, cycle_id="c1"))


def approval(a: ProposedAction) -> list[Embed]:
    card = ApprovalCard(
        action=a, level=LEVEL, deadline=DEADLINE, approvers=Approvers(), ui_url="http://ui/x"
    )
    return embeds(card)


def result(a: ProposedAction) -> list[Embed]:
    card = ResultCard(
        action=a,
        decision=DECISION,
        job_id="42",
        job_url=None,
        job_state="successful",
        duration_s=1.0,
        verification=VERIFICATION,
        output_tail="ok",
    )
    return embeds(card)


def record(a: ProposedAction) -> ActionRecord:
    return ActionRecord(
        proposal=a,
        status=ActionStatus.FINISHED,
        flow_run_id="fr",
        created_at=NOW,
        updated_at=NOW,
        request=approval_request(a, DEADLINE),
        job=JobRecord(
            action_id=a.action_id, runner="awx", template="30", marker="m", intent_at=NOW
        ),
    )


def report_md(a: ProposedAction) -> str:
    return action_report(
        record(a),
        decision=DECISION,
        job_state="successful",
        output_tail="ok",
        verification=VERIFICATION,
        outcome="effective",
        counts=False,
    )


def cycle_md(a: ProposedAction) -> str:
    outcome = ActionOutcome(
        catalog_key=a.catalog_key,
        host=a.host,
        parameters=a.parameters,
        risk="low",
        policy="allowed",
        dispatched=True,
    )
    return cycle_markdown(
        CycleReport(cycle_id="c1", started_at=NOW, outcome=CycleOutcome.ACTIONS, actions=[outcome])
    )


EMBED_RENDERERS = {"summary": lambda a: summary([a, a]), "approval": approval, "result": result}
MARKDOWN_RENDERERS = {
    "approval form": lambda a: approval_markdown(a, LEVEL, deadline=DEADLINE, ui_allowed=True),
    "action report": report_md,
    "cycle report": cycle_md,
}


# --- the seen case --------------------------------------------------------------------------
def test_summary_with_an_integer_parameter_renders() -> None:
    """Seen: `', '.join(a.parameters.values())` raised TypeError on an integer parameter,
    so the cycle crashed before asking for any approval."""
    actions = [proposed({"i": 3, "s": "nginx.service"}), proposed({"i": 4, "b": False})]
    [embed] = summary(actions)
    assert not isinstance(embed, FallbackEmbed)
    assert "`i=3, s=nginx.service`" in (embed.description or "")
    assert "`i=4, b=false`" in (embed.description or "")
    assert_discord_valid([embed])


# --- every value, every renderer ------------------------------------------------------------
@pytest.mark.parametrize(("name", "value"), CASES, ids=CASE_IDS)
@pytest.mark.parametrize("renderer", list(EMBED_RENDERERS))
def test_every_allowed_value_renders_valid_inert_embeds(
    renderer: str, name: str, value: Any
) -> None:
    embeds = EMBED_RENDERERS[renderer](proposed({name: value}))
    assert fallback_notices(embeds) == []  # rendered for real, not degraded
    assert_discord_valid(embeds)
    assert_shown_and_inert(texts(embeds), value)


@pytest.mark.parametrize(("name", "value"), CASES, ids=CASE_IDS)
@pytest.mark.parametrize("renderer", list(MARKDOWN_RENDERERS))
def test_every_allowed_value_renders_inert_markdown(renderer: str, name: str, value: Any) -> None:
    md = MARKDOWN_RENDERERS[renderer](proposed({name: value}))
    assert "could not be rendered" not in md
    assert_shown_and_inert(md, value)
    for line in md.splitlines():  # a value never breaks a line or a table row open
        if line.startswith("| `typed_fix`"):
            assert len(re.findall(r"(?<!\\)\|", line)) == 7, line


@pytest.mark.parametrize("renderer", list(EMBED_RENDERERS))
def test_every_type_at_its_limits_at_once_stays_within_discords_limits(renderer: str) -> None:
    embeds = EMBED_RENDERERS[renderer](proposed(WIDEST, reason="r" * 4000))
    assert fallback_notices(embeds) == []
    assert_discord_valid(embeds)
    assert "@everyone" not in outside_code(texts(embeds))


def test_summary_of_many_actions_stays_within_the_description_limit() -> None:
    actions = [proposed({"s": f"{n}" + "v" * 4000, "i": n}) for n in range(40)]
    [embed] = summary(actions)
    assert_discord_valid([embed])
    assert embed.title == "📊 40 remediation actions proposed"
    assert "more" in (embed.description or "").splitlines()[-1]  # says what it left out


def test_the_same_value_reads_the_same_everywhere() -> None:
    params = {"i": 3, "n": 0.5, "b": True, "s": "a b"}
    a = proposed(params)
    assert parameters_json(params) == '{"i": 3, "n": 0.5, "b": true, "s": "a b"}'
    assert parameters_inline(params) == "i=3, n=0.5, b=true, s=a b"
    assert parameters_json(params) in approval(a)[0].fields[3].value  # "Parameters"
    assert code_span(parameters_json(params)) in result(a)[0].fields[0].value
    assert code_span(parameters_json(params)) in report_md(a)
    form = MARKDOWN_RENDERERS["approval form"](a)
    assert "  - `b`: `true`" in form and "  - `i`: `3`" in form
    assert value_text(float("nan")) == "NaN" and value_text(10**5000).startswith("<integer")


# --- a renderer that fails degrades to plain text with a notice ---------------------------
def test_a_failing_renderer_gives_a_plain_fallback_and_a_notice() -> None:
    def broken(actions: list[ProposedAction], *, cycle_id: str) -> Embed:
        raise TypeError("sequence item 1: expected str instance, int found")

    a = proposed({"i": 3, "s": "<@&1> `x`\n**y**"})
    rendered = render_or_plain("cycle summary", broken, [a], cycle_id="c1")
    assert rendered.notice == (
        "The cycle summary could not be rendered (TypeError: sequence item 1: expected "
        "str instance, int found); it is shown as plain text."
    )
    [embed] = rendered.embeds
    assert fallback_notices(rendered.embeds) == [rendered.notice]
    assert embed.title == "⚠️ cycle summary (plain-text fallback)" and embed.footer == "cycle c1"
    assert_discord_valid(rendered.embeds)
    # the inputs, as inert text: what was proposed is still readable
    assert "catalog_key: typed_fix · host: web-02" in (embed.description or "")
    assert '"i": 3' in (embed.description or "")
    assert "<@&1>" not in outside_code(embed.description or "")


def test_a_working_renderer_passes_through_unchanged() -> None:
    a = proposed({"i": 3})
    rendered = render_or_plain("summary", render.summary_message, "s", [a, a], cycle_id="c1")
    assert rendered.notice is None
    assert rendered.embeds == [render.summary_message("s", [a, a], cycle_id="c1")]


@pytest.mark.parametrize("shape", ["embed", "embeds", "markdown"])
def test_a_wrapped_renderer_degrades_in_its_own_shape(shape: str) -> None:
    @degrades("thing", shape)  # type: ignore[arg-type]
    def boom(x: int) -> Any:
        return {}["missing"]

    out = boom(7)
    if shape == "markdown":
        assert out.startswith("> ⚠️ The thing could not be rendered (KeyError: 'missing')")
        assert "```text\n7\n```" in out
    else:
        embeds = [out] if shape == "embed" else out
        assert [type(e) for e in embeds] == [FallbackEmbed]
        assert_discord_valid(embeds)


def broken_action() -> Any:
    """An input no caller passes: a stand-in for any renderer bug."""
    return None


@pytest.mark.parametrize(
    "call",
    [
        lambda: [render.summary_message("s", [broken_action()], cycle_id="c1")],
        lambda: render.manual_issues_message([broken_action()], cycle_id="c1"),
        lambda: render.analysis_unavailable_message(
            [broken_action()], reason="r", excerpt="", cycle_id="c1"
        ),
        lambda: [
            approval_embed(
                broken_action(),
                LEVEL,
                deadline=DEADLINE,
                approvers=Approvers(),
                history=[],
                ui_url="http://ui/x",
            )
        ],
        lambda: [reminder_embed(broken_action(), LEVEL, deadline=DEADLINE)],
        lambda: [
            result_embed(
                action=broken_action(),
                decision=DECISION,
                job_id="42",
                job_url=None,
                job_state="successful",
                duration_s=1.0,
                verification=VERIFICATION,
                output_tail="ok",
            )
        ],
    ],
    ids=["summary", "manual", "analysis-unavailable", "approval", "reminder", "result"],
)
def test_every_posted_renderer_degrades_instead_of_raising(call: Any) -> None:
    embeds = call()
    [notice] = fallback_notices(embeds)
    assert "could not be rendered (AttributeError" in notice
    assert_discord_valid(embeds)


@pytest.mark.parametrize(
    "call",
    [
        lambda: approval_markdown(broken_action(), LEVEL, deadline=DEADLINE, ui_allowed=True),
        lambda: action_report(
            broken_action(),
            decision=DECISION,
            job_state="successful",
            output_tail="",
            verification=VERIFICATION,
            outcome="effective",
            counts=False,
        ),
        lambda: cycle_markdown(broken_action()),
    ],
    ids=["approval-form", "action-report", "cycle-report"],
)
def test_every_markdown_renderer_degrades_instead_of_raising(call: Any) -> None:
    assert "could not be rendered" in call().splitlines()[0]


def test_the_policy_under_test_allows_every_generated_value() -> None:
    """The values above are what the catalog accepts, not more."""
    entry = next(e for e in POLICY.catalog if e.key == "typed_fix")
    for name, value in CASES:
        assert entry.validate_parameters({name: value}, {"nginx.service"}, "web-02") == []
    assert entry.validate_parameters({"s": "x" * (STRING_MAX + 1)}, set(), "web-02")
    assert CheckName.FAILED_UNIT in entry.addresses
