"""Approving in the real Prefect UI, in a real browser (issue 17).

A real `prefect server start` with the UI (`tests/e2e/ui_server.py`; the session harness
serves no UI), the sandbox servers with the blocks saved into that server, and two
`remediate_action` runs paused for approval: a medium-risk one on web-01 and a
high-risk one on web-02. The approval listener runs in the background, as it would in
production. Playwright drives Debian's /usr/bin/chromium through each run's V2 page —
opened from the link in the Discord approval message — and its Resume dialog:

- the dialog shows the proposal (host, action, parameters, reason, deadline) rendered
  from Markdown;
- submitting without a decision shows the server's validation message and changes
  nothing (still paused, no decision in the ledger, nothing launched, Discord as it was);
- medium, approve + comment: the job runs in the sandbox AWX, the ledger records a UI
  decision, and the listener edits the Discord message to "decided in the Prefect UI";
- high, approve + comment: refused — the same run pauses again for the Discord quorum,
  Discord says why, nothing is launched.

With `wait: pause` the runs are in-process; with `wait: suspend` they are top-level runs
of a served deployment, suspended (no process) until the UI resumes them, then re-run
from the top by the serve process — the same page, dialog and outcomes.

Every step is screenshotted; on failure the screenshots, the browser console and the
server log are kept under test-artifacts/ui/<test>/. The dialog with the rendered
proposal is the README's picture: written to docs/ui-approve.png when that file is
missing or REMEDIATION_UPDATE_SCREENSHOTS=1 (so ordinary runs leave the tree clean).
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, suppress
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from playwright.async_api import BrowserContext, Page, async_playwright, expect
from prefect.client.orchestration import get_client
from prefect.events.worker import EventsWorker
from prefect.logging.handlers import APILogWorker
from prefect.settings import PREFECT_API_URL, temporary_settings

from clients.prefect_runs import PrefectRuns
from core.records import ActionStatus
from flows.remediate_action import remediate_action
from tests.e2e.branches_helpers import rerun_time, waited_suspended, waiting
from tests.e2e.ui_server import UiServer, prefect_ui_server
from tests.fixtures.loki_discord import CHANNEL_ID
from tests.fixtures.serve import DEPLOYMENT, ServedDeployment
from tests.fixtures.stack import FAST_SETTINGS, Stack, wire_stack
from tests.flows.actions import paused_runs, policy_with, proposal
from tests.flows.helpers import approval_messages, eventually, listener

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = REPO / "test-artifacts" / "ui"
DOCS_SCREENSHOT = REPO / "docs" / "ui-approve.png"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
LOOPBACK = {"127.0.0.1", "localhost", "::1", "[::1]"}
TEMPLATE = 30  # the AWX sandbox's scripted job (tests/flows/actions.py)
REQUIRED = "'decision' is a required property"
expect.set_options(timeout=15_000)
# Approving with either wait; a suspended run's re-runs (worker poll, new process) take longer.
WAITS = ["pause", pytest.param("suspend", marks=pytest.mark.timeout(600))]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not os.access(CHROMIUM, os.X_OK),
        reason=f"{CHROMIUM} is absent: `make test` installs Debian's chromium "
        "(apt-get install chromium) for the Prefect UI browser test",
    ),
]


@pytest.fixture(scope="module")
def ui_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UiServer]:
    with prefect_ui_server(tmp_path_factory.mktemp("prefect-ui")) as server:
        yield server


@pytest.fixture
async def ui_stack(
    ui_server: UiServer,
    prometheus: Any,
    fleet_reset: Any,
    loki: Any,
    discord: Any,
    anthropic: Any,
    wired_jobs: Any,
    tmp_path: Path,
) -> AsyncIterator[Stack]:
    """The sandbox wired as `stack` does, but with every block saved into the UI server,
    and the Prefect client pointed at it for the duration of the test."""
    with temporary_settings({PREFECT_API_URL: ui_server.api_url}):
        await _drain_prefect_workers()  # a fresh events worker, bound to this server
        try:
            yield await wire_stack(
                prometheus, fleet_reset, loki, discord, anthropic, wired_jobs, tmp_path
            )
        finally:
            # Logs and events reach this server before it stops; later tests get workers
            # bound to their own server.
            await _drain_prefect_workers()


async def _drain_prefect_workers() -> None:
    with suppress(RuntimeError):
        await APILogWorker.drain_all(timeout=10)
    with suppress(RuntimeError):
        await EventsWorker.drain_all(timeout=10)


# --- the browser ------------------------------------------------------------------------
class Steps:
    """Numbered screenshots of each step, plus the browser's console."""

    def __init__(self, page: Page, folder: Path) -> None:
        self.page, self.folder, self.n = page, folder, 0
        self.console: list[str] = []
        self.aborted: list[str] = []  # non-loopback requests the browser tried
        self.timings: dict[str, float] = {}
        folder.mkdir(parents=True, exist_ok=True)
        page.on("console", lambda m: self.console.append(f"{m.type}: {m.text}"))
        page.on("pageerror", lambda e: self.console.append(f"pageerror: {e}"))

    async def shot(self, name: str) -> Path:
        self.n += 1
        path = self.folder / f"{self.n:02d}-{name}.png"
        await self.page.screenshot(path=path, animations="disabled")
        return path

    @asynccontextmanager
    async def timed(self, name: str) -> AsyncIterator[None]:
        started = time.monotonic()
        yield
        self.timings[name] = round(time.monotonic() - started, 2)


@asynccontextmanager
async def browser(tmp_path: Path, aborted: list[str]) -> AsyncIterator[BrowserContext]:
    """Debian's chromium, headless, in a fresh profile; nothing leaves the loopback
    (requests elsewhere are aborted and their URLs appended to `aborted`)."""
    async with async_playwright() as pw:
        context = await pw.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"),
            executable_path=CHROMIUM,
            headless=True,
            args=CHROMIUM_FLAGS,
            viewport={"width": 1280, "height": 1400},
        )

        async def loopback_only(route: Any) -> None:
            if urlsplit(route.request.url).hostname in LOOPBACK:
                await route.continue_()
            else:  # the V2 bundle tries an analytics host even with analytics off
                aborted.append(route.request.url)
                await route.abort()

        await context.route("**/*", loopback_only)
        try:
            yield context
        finally:
            await context.close()


@asynccontextmanager
async def kept_on_failure(steps: Steps, name: str, server: UiServer) -> AsyncIterator[None]:
    """On failure: a last screenshot, the console and the server log under
    test-artifacts/ui/<name>/ (git-ignored)."""
    target = ARTIFACTS / name
    try:
        yield
    except BaseException:
        with suppress(Exception):
            await steps.shot("failure")
        (steps.folder / "browser-console.log").write_text("\n".join(steps.console))
        (steps.folder / "aborted-requests.log").write_text("\n".join(steps.aborted))
        (steps.folder / "prefect-server.log").write_text(server.log_tail(200_000))
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(steps.folder, target)
        print(f"browser test artifacts: {target}")
        raise
    shutil.rmtree(target, ignore_errors=True)  # stale artifacts of an earlier failure


async def open_resume_dialog(page: Page, link: str) -> Any:
    """The run's V2 page, then kebab menu → Resume; the dialog, by its name."""
    await page.goto(link)
    await expect_paused_page(page)
    await page.get_by_role("button", name="Open menu").first.click()
    await page.get_by_role("menuitem", name="Resume").click()
    dialog = page.get_by_role("dialog", name="Resume Flow Run")
    await expect(dialog).to_be_visible()
    await expect(dialog.locator(".prose h2")).to_be_visible(timeout=15_000)
    return dialog


async def expect_paused_page(page: Page) -> None:
    """The run page has loaded, showing the state badge "Paused" (or, for a suspended
    run, "Suspended") and the kebab menu."""
    waiting = re.compile("Paused|Suspended")
    await expect(page.locator('[data-slot="badge"]', has_text=waiting).first).to_be_visible(
        timeout=30_000
    )
    await expect(page.get_by_role("button", name="Open menu").first).to_be_visible()


async def expect_rendered_proposal(
    dialog: Any, *, host: str, reason: str, deadline: str, ui_note: str
) -> None:
    """The form's description is the proposal, rendered from Markdown (not raw)."""
    prose = dialog.locator(".prose")
    await expect(prose.locator("h2")).to_contain_text(f"Approve noop_fix on {host}?")
    await expect(prose.locator("h2 code")).to_have_text(["noop_fix", host])
    await expect(prose.locator("li code")).to_have_text(["unit", "nginx.service"])
    await expect(prose.locator("blockquote").first).to_have_text(reason)
    bold = await prose.locator("strong").all_inner_texts()
    assert {"Risk:", "Deadline:", "Parameters:", "Reason (Claude, untrusted):"} <= set(bold)
    text = await prose.inner_text()
    assert deadline in text
    assert ui_note in text
    assert "**" not in text and "##" not in text and "`" not in text  # rendered, not raw


async def choose(page: Page, dialog: Any, decision: str, comment: str) -> None:
    await dialog.get_by_role("button", name="Select Decision").click()
    await page.get_by_role("option", name=decision).click()
    await expect(dialog.get_by_role("button", name="Select Decision")).to_have_text(decision)
    await dialog.get_by_label("Comment (Optional)").fill(comment)


async def docs_screenshot(page: Page, dialog: Any, steps: Steps) -> None:
    """The dialog with the rendered proposal, filled in: the README's picture."""
    box = await dialog.bounding_box()
    assert box is not None
    pad = 16
    clip = {
        "x": max(box["x"] - pad, 0),
        "y": max(box["y"] - pad, 0),
        "width": box["width"] + 2 * pad,
        "height": box["height"] + 2 * pad,
    }
    path = steps.folder / "dialog-for-docs.png"
    await page.screenshot(path=path, clip=clip, animations="disabled")
    if os.environ.get("REMEDIATION_UPDATE_SCREENSHOTS") == "1" or not DOCS_SCREENSHOT.exists():
        DOCS_SCREENSHOT.parent.mkdir(exist_ok=True)
        shutil.copyfile(path, DOCS_SCREENSHOT)


# --- sandbox and Prefect state ----------------------------------------------------------
async def record_of(stack: Stack, action_id: str) -> Any:
    async with stack.ledger() as ledger:
        return await ledger.actions.get_action(action_id)


async def audit_events(stack: Stack, action_id: str) -> list[str]:
    async with stack.ledger() as ledger:
        return [e["event"] for e in await ledger.operations.audit_trail(action_id=action_id)]


def approval_message(stack: Stack, host: str) -> Any:
    [message] = [m for m in approval_messages(stack) if f" on {host}?" in m.embeds[0]["title"]]
    return message


def launched_on(stack: Stack) -> list[str]:
    return [job.limit for job in stack.awx.jobs(TEMPLATE)]


async def pause_key(run_id: Any) -> str | None:
    async with get_client() as client:
        run = await client.read_flow_run(run_id)
    return run.state.state_details.pause_key if run.state.is_paused() else None


class ActionRun:
    """One `remediate_action` run: in-process (`wait: pause`), or — suspended runs need a
    deployment and a top-level run — a run of the served deployment (`wait: suspend`)."""

    def __init__(self, task: asyncio.Task[Any] | None = None, run_id: str | None = None):
        self.task, self.run_id = task, run_id

    def done(self) -> bool:
        return self.task.done() if self.task is not None else False

    async def final_state(self, timeout: float) -> Any:
        if self.task is not None:
            return await asyncio.wait_for(asyncio.shield(self.task), timeout)

        async def final() -> Any:
            async with get_client() as client:
                state = (await client.read_flow_run(self.run_id)).state
            return state if state is not None and state.is_final() else None

        return await eventually(final, timeout=timeout, what="the run's end")


async def start(
    stack: Stack, action: Any, policy: dict[str, Any], served: ServedDeployment | None
) -> ActionRun:
    parameters = {
        "action": action.model_dump(mode="json"),
        "policy": policy,
        "blocks": stack.names,
        "settings": FAST_SETTINGS,  # no ui_url: the link comes from PREFECT_UI_URL
    }
    if served is None:
        return ActionRun(
            task=asyncio.create_task(remediate_action(**parameters, return_state=True))
        )
    await served.ready()
    async with PrefectRuns.open() as runs:
        run = await runs.run_deployment(
            DEPLOYMENT,
            {**parameters, "blocks": stack.names.model_dump()},
            idempotency_key=f"ui-{action.action_id}",
            tags=[f"action:{action.action_id}"],
            as_subflow=False,
        )
    return ActionRun(run_id=str(run.id))


async def finish(runs: list[tuple[Any, ActionRun | None]]) -> None:
    """End the runs whatever happened: a UI reject (always honoured) for one still
    paused, then wait for each; a run that will not end is cancelled."""
    for run_id, run in runs:
        if run is None:
            continue
        if run_id is not None and not run.done() and await pause_key(run_id):
            async with get_client() as client:
                with suppress(Exception):
                    await client.resume_flow_run(run_id, run_input={"decision": "reject"})
        if run.task is None:
            continue  # a deployment run: the served deployment's stop ends what is left
        await asyncio.wait([run.task], timeout=60)
        if not run.task.done():
            run.task.cancel()
            with suppress(BaseException):
                await run.task


# --- the test ---------------------------------------------------------------------------
@pytest.mark.timeout(300)
@pytest.mark.parametrize("wait", WAITS)
async def test_approving_in_the_prefect_ui(
    ui_stack: Stack,
    ui_server: UiServer,
    tmp_path: Path,
    request: pytest.FixtureRequest,
    wait: str,
) -> None:
    served = None
    if wait == "suspend":
        served = ServedDeployment(ui_server.api_url, tmp_path / "serve.log")
    try:
        await approving_in_the_prefect_ui(ui_stack, ui_server, tmp_path, request, wait, served)
    finally:
        if served is not None:
            await served.stop()


async def approving_in_the_prefect_ui(
    stack: Stack,
    ui_server: UiServer,
    tmp_path: Path,
    request: pytest.FixtureRequest,
    wait: str,
    served: ServedDeployment | None,
) -> None:
    t0 = time.monotonic()
    # catalog floor low: the proposals carry their own risk; every level waits `wait`
    policy = waiting(policy_with(), wait)
    medium = proposal(
        policy,
        host="web-01",
        risk="medium",
        reason="nginx failed on web-01; a restart should bring it back",
    )
    high = proposal(
        policy,
        host="web-02",
        risk="high",
        reason="nginx failed on web-02; a restart should bring it back",
    )
    medium_task = high_task = None
    medium_id = high_id = None
    try:
        medium_task = await start(stack, medium, policy, served)
        high_task = await start(stack, high, policy, served)
        patience = rerun_time(wait, 60)
        [medium_run] = await eventually(
            lambda: paused_runs(medium.action_id), timeout=patience, what="medium"
        )
        [high_run] = await eventually(
            lambda: paused_runs(high.action_id), timeout=patience, what="high"
        )
        assert await waited_suspended(medium_run.id) is (wait == "suspend")
        medium_id, high_id = medium_run.id, high_run.id
        paused_at = time.monotonic() - t0

        # issue 17 §4: the Discord link is the V2 page this test drives
        links = {}
        for host, run_id in (("web-01", medium_id), ("web-02", high_id)):
            embed = approval_message(stack, host).embeds[0]
            fields = {f["name"]: f["value"] for f in embed["fields"]}
            links[host] = embed["url"]
            assert embed["url"] == f"{ui_server.url}/v2/runs/flow-run/{run_id}"
            assert f"({embed['url']})" in fields["Prefect"]
        medium_deadline = (await record_of(stack, medium.action_id)).request.deadline
        high_deadline = (await record_of(stack, high.action_id)).request.deadline

        aborted: list[str] = []
        async with listener(stack, poll_seconds=0.5), browser(tmp_path, aborted) as context:
            page = context.pages[0] if context.pages else await context.new_page()
            page.set_default_timeout(30_000)  # two shared CPUs: be patient, not flaky
            steps = Steps(page, tmp_path / "screenshots")
            steps.aborted = aborted
            async with kept_on_failure(steps, request.node.name, ui_server):
                # --- medium: the proposal, a submit without a decision, then approve
                async with steps.timed("medium: page and dialog"):
                    dialog = await open_resume_dialog(page, links["web-01"])
                await expect_rendered_proposal(
                    dialog,
                    host="web-01",
                    reason=medium.reason,
                    deadline=medium_deadline.isoformat(timespec="seconds"),
                    ui_note="An approval here is sufficient.",
                )
                await steps.shot("medium-dialog")

                async with steps.timed("medium: submit without a decision"):
                    await dialog.get_by_role("button", name="Resume").click()
                    await expect(page.get_by_text(REQUIRED)).to_be_visible()
                await steps.shot("medium-no-decision-refused")
                await asyncio.sleep(1.5)  # three pause polls: would anything move?
                assert await pause_key(medium_id) == f"approve-{medium.action_id}"
                record = await record_of(stack, medium.action_id)
                assert record.decision is None
                assert record.status is ActionStatus.AWAITING_APPROVAL
                assert launched_on(stack) == []
                message = approval_message(stack, "web-01")
                assert (message.content, message.history) == ("", [])
                await expect(dialog).to_be_visible()  # the form stays open to fix

                comment = "nginx is down for every web-01 user; go ahead"
                await choose(page, dialog, "approve", comment)
                await steps.shot("medium-approve-filled")
                await docs_screenshot(page, dialog, steps)
                async with steps.timed("medium: submit → toast"):
                    await dialog.get_by_role("button", name="Resume").click()
                    await expect(page.get_by_text("Flow run resumed")).to_be_visible()
                await steps.shot("medium-resumed")

                async with steps.timed("medium: resume → job launched"):
                    await eventually(
                        lambda: launched_on(stack), timeout=rerun_time(wait, 30), what="AWX launch"
                    )
                assert launched_on(stack) == ["web-01"]
                async with steps.timed("medium: resume → Discord edited"):
                    edited = await eventually(
                        lambda: (
                            "decided in the Prefect UI" in approval_message(stack, "web-01").content
                        ),
                        timeout=rerun_time(wait, 30),
                        what="the approval message edited by the listener",
                    )
                assert edited
                message = approval_message(stack, "web-01")
                assert message.content == (f"✅ Approved — decided in the Prefect UI — {comment}")
                record = await record_of(stack, medium.action_id)
                assert (record.decision.via, record.decision.decider) == ("ui", "Prefect UI")
                assert (record.decision.decision, record.decision.comment) == (
                    "approve",
                    comment,
                )
                assert record.decision.applied_at is not None
                assert record.job is not None and record.job.runner == "awx"

                # --- high: a UI approve is refused and the run re-gated
                async with steps.timed("high: page and dialog"):
                    dialog = await open_resume_dialog(page, links["web-02"])
                await expect_rendered_proposal(
                    dialog,
                    host="web-02",
                    reason=high.reason,
                    deadline=high_deadline.isoformat(timespec="seconds"),
                    ui_note="An approval here is not sufficient for high risk",
                )
                await expect(
                    dialog.locator(".prose strong").filter(
                        has_text="An approval here is not sufficient for high risk"
                    )
                ).to_be_visible()
                await steps.shot("high-dialog")
                await choose(page, dialog, "approve", "looks right to me")
                await steps.shot("high-approve-filled")
                async with steps.timed("high: submit → toast"):
                    await dialog.get_by_role("button", name="Resume").click()
                    await expect(page.get_by_text("Flow run resumed")).to_be_visible()
                await steps.shot("high-resumed")

                async with steps.timed("high: resume → re-gated"):
                    key = await eventually(
                        lambda: _regated(high_id),
                        timeout=rerun_time(wait, 30),
                        what="the high run re-paused",
                    )
                assert key == f"approve-{high.action_id}-regate-1"
                [gated] = [
                    m
                    for m in stack.discord.messages(CHANNEL_ID)
                    if m.embeds and m.embeds[0].get("title", "").startswith("🔒 Still gated")
                ]
                assert gated.embeds[0]["title"] == "🔒 Still gated: noop_fix on web-02"
                why = gated.embeds[0]["description"]
                assert "not sufficient for high-risk actions" in why
                assert "2 approvers react ✅ in Discord" in why
                # the page shows it paused again, and the form is there for the new pause
                dialog = await open_resume_dialog(page, links["web-02"])
                await expect(dialog.locator(".prose h2")).to_contain_text("on web-02?")
                await steps.shot("high-paused-again")
                await dialog.get_by_role("button", name="Cancel").click()
                await expect(dialog).to_be_hidden()
                assert launched_on(stack) == ["web-01"]  # nothing for web-02
                record = await record_of(stack, high.action_id)
                assert record.decision is None and record.job is None
                assert record.status is ActionStatus.AWAITING_APPROVAL
                assert "ui_approve_refused" in await audit_events(stack, high.action_id)
                message = approval_message(stack, "web-02")
                assert (message.content, message.history) == ("", [])

                # the approved action ran to its end
                state = await medium_task.final_state(rerun_time(wait, 60))
                assert state.is_completed()
                if medium_task.task is not None:  # in-process: its result is at hand
                    result = await state.aresult()
                    assert result.job_state == "successful", result
                job = (await record_of(stack, medium.action_id)).job
                assert job is not None and job.state == "successful", job
                assert (await record_of(stack, medium.action_id)).status not in (
                    ActionStatus.AWAITING_APPROVAL,
                    ActionStatus.REJECTED,
                )
        timings = {"both paused": round(paused_at, 2), **steps.timings}
        print(f"UI approval timings (s): {timings}; total {time.monotonic() - t0:.1f}")
    finally:
        await finish([(medium_id, medium_task), (high_id, high_task)])


async def _regated(run_id: Any) -> str | None:
    key = await pause_key(run_id)
    return key if key and "regate" in key else None
