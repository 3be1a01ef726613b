"""Deploying as a user does: `prefect deploy --all`, `remediation-blocks`, the console scripts.

Every command runs as a subprocess against the session's Prefect test server, exactly as
a user would type it with PREFECT_API_URL set; what it did is read back through the API.
"""

from __future__ import annotations

import asyncio
import io
import os
import subprocess
import sys
from collections.abc import Mapping
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from typing import Any

import pytest
import yaml
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

from blocks import ClaudeCredentials, DiscordBot, LedgerDatabase, PrometheusConnection, setup
from blocks.names import BlockNames
from blocks.policy import DEFAULT_POLICY_BLOCK
from clients.ledger import Ledger
from core.settings import ActionSettings, ListenerSettings
from flows.dispatch import dispatch_actions
from tests.flows.actions import proposal

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
POOL = "remediation"


async def run(
    argv: list[str], api_url: str, env: Mapping[str, str] | None = None, timeout: float = 180
) -> subprocess.CompletedProcess[str]:
    """A command as a user types it, against the test server (stdin closed: no prompts)."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("REMEDIATION_")}
    full_env.update({"PREFECT_API_URL": api_url, **(env or {})})
    return await asyncio.to_thread(
        subprocess.run, argv, cwd=REPO, env=full_env, stdin=subprocess.DEVNULL,
        capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, f"{result.args} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


# --- prefect.yaml -------------------------------------------------------------------------
@pytest.mark.slow
async def test_prefect_deploy_all_creates_the_three_deployments(prefect_harness: str) -> None:
    prefect = str(BIN / "prefect")
    ok(await run([prefect, "work-pool", "create", POOL, "--type", "process"], prefect_harness))
    ok(await run([prefect, "--no-prompt", "deploy", "--all"], prefect_harness))
    try:
        async with get_client() as client:
            pool = await client.read_work_pool(POOL)
            cycle = await client.read_deployment_by_name("remediation-cycle/remediation-cycle")
            action = await client.read_deployment_by_name("remediate-action/remediate-action")
            listener = await client.read_deployment_by_name("approval-listener/approval-listener")
        assert pool.type == "process"
        for d in (cycle, action, listener):
            assert d.work_pool_name == POOL
            assert d.pull_steps == [
                {
                    "prefect.deployments.steps.set_working_directory": {
                        "directory": "{{ $REMEDIATION_CHECKOUT }}"
                    }
                }
            ]
            # block NAMES (the defaults every command uses) and the policy block's name:
            # no deployment embeds a policy, every one reads the same block
            assert BlockNames.model_validate(d.parameters["blocks"]) == BlockNames(
                policy=DEFAULT_POLICY_BLOCK
            )
            assert "policy" not in d.parameters

        [schedule] = cycle.schedules
        assert schedule.active and schedule.schedule.cron == "*/15 * * * *"
        assert cycle.concurrency_options.collision_strategy == "CANCEL_NEW"
        assert cycle.global_concurrency_limit.limit == 1
        assert cycle.parameters["dispatch"] == "auto"
        assert cycle.parameters["controls"]["cycle_interval_seconds"] == 900
        # the cycle dispatches to the action deployment by its full name
        assert action.name == "remediate-action"
        assert (
            cycle.parameters["dispatch_options"]["settings"]["deployment"]
            == ActionSettings().deployment
            == "remediate-action/remediate-action"
        )

        assert action.schedules == []
        assert action.global_concurrency_limit is None
        ActionSettings.model_validate(action.parameters["settings"])

        [schedule] = listener.schedules
        assert schedule.active
        interval = schedule.schedule.interval.total_seconds()
        settings = ListenerSettings.model_validate(listener.parameters["settings"])
        assert listener.concurrency_options.collision_strategy == "ENQUEUE"
        assert listener.global_concurrency_limit.limit == 1
        # gap-free: each run polls until just before the next one is due
        assert interval - settings.poll_seconds <= settings.run_seconds < interval

        # the operational deployments, each limited to one run at a time
        async with get_client() as client:
            for name in (
                "remediation-watchdog/remediation-watchdog",
                "reconcile-actions/reconcile-actions",
                "prune-ledger/prune-ledger",
            ):
                extra = await client.read_deployment_by_name(name)
                assert extra.schedules and extra.schedules[0].active
                assert extra.global_concurrency_limit.limit == 1

        # README: redeploying re-activates a schedule paused in the meantime
        async with get_client() as client:
            await client.update_deployment_schedule(cycle.id, schedule_id(cycle), active=False)
        ok(await run([prefect, "--no-prompt", "deploy", "--name", "remediation-cycle"],
                     prefect_harness))  # fmt: skip
        async with get_client() as client:
            again = await client.read_deployment(cycle.id)
        assert [s.active for s in again.schedules] == [True]
    finally:
        async with get_client() as client:
            for d in await client.read_deployments():
                if d.work_pool_name == POOL:
                    await client.delete_deployment(d.id)
            await client.delete_work_pool(POOL)


@pytest.mark.slow
async def test_a_dispatched_action_keeps_its_deployments_settings_and_a_listener_starts(
    prefect_harness: str, tmp_path: Path
) -> None:
    """The cycle passes `settings: {deployment: ...}`; the action run still gets every
    setting the remediate-action deployment declares. And with no listener running, the
    dispatch starts one at once (a second dispatch, with that one due, starts none)."""
    prefect = str(BIN / "prefect")
    ok(await run([prefect, "work-pool", "create", POOL, "--type", "process"], prefect_harness))
    ok(await run([prefect, "--no-prompt", "deploy", "--all"], prefect_harness))
    data = yaml.safe_load((REPO / "prefect.yaml").read_text())
    [cycle] = [d for d in data["deployments"] if d["name"] == "remediation-cycle"]
    [declared] = [d for d in data["deployments"] if d["name"] == "remediate-action"]
    options = {
        **cycle["parameters"]["dispatch_options"],
        "blocks": BlockNames(policy=DEFAULT_POLICY_BLOCK).model_dump(),
        "policy": None,
    }
    try:
        async with Ledger(f"sqlite+aiosqlite:///{tmp_path}/ledger.db") as ledger:
            first = await dispatch_actions(
                [proposal({}, key="restart_unit", cycle_id="c1")],
                mode="deployment",
                options=options,
                ledger=ledger,
            )
            second = await dispatch_actions(
                [proposal({}, key="restart_unit", cycle_id="c2", unit="cron.service")],
                mode="deployment",
                options=options,
                ledger=ledger,
            )
        assert len(first.dispatched) == len(second.dispatched) == 1, (first, second)
        async with get_client() as client:
            [run_id] = first.dispatched.values()
            action_run = await client.read_flow_run(run_id)
            listener = await client.read_deployment_by_name(options["listener"])
            listener_runs = await client.read_flow_runs(
                deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[listener.id]))
            )
        settings = action_run.parameters["settings"]
        assert settings == {
            **declared["parameters"]["settings"],
            **cycle["parameters"]["dispatch_options"]["settings"],
        }
        assert settings["settle_seconds"] == declared["parameters"]["settings"]["settle_seconds"]
        assert action_run.parameters["blocks"]["policy"] == DEFAULT_POLICY_BLOCK
        assert action_run.parameters.get("policy") is None
        # one listener run, started by the first dispatch; the second found it due
        assert first.listener_run_id is not None and second.listener_run_id is None
        assert [str(r.id) for r in listener_runs] == [first.listener_run_id]
        assert "started-by-cycle" in listener_runs[0].tags
    finally:
        async with get_client() as client:
            for d in await client.read_deployments():
                if d.work_pool_name == POOL:
                    for r in await client.read_flow_runs(
                        deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[d.id]))
                    ):
                        await client.delete_flow_run(r.id)
                    await client.delete_deployment(d.id)
            await client.delete_work_pool(POOL)


def schedule_id(deployment: Any) -> Any:
    [schedule] = deployment.schedules
    return schedule.id


def test_prefect_yaml_names_one_policy_block_and_embeds_no_policy() -> None:
    """The listener applies the risk register: it must read the cycle's policy, so every
    deployment names the same policy block and none carries a copy of its own."""
    data = yaml.safe_load((REPO / "prefect.yaml").read_text())
    params = {d["name"]: d["parameters"] for d in data["deployments"]}
    assert not [name for name, p in params.items() if "policy" in p]
    assert "policy" not in (data.get("definitions") or {})
    assert all(p["blocks"] == params["remediation-cycle"]["blocks"] for p in params.values())
    assert params["remediation-cycle"]["blocks"]["policy"] == DEFAULT_POLICY_BLOCK


# --- console entry points -------------------------------------------------------------------
HELP = {
    "remediation-sandbox": "Prometheus",
    "remediation-listener": "--poll-seconds",
    "remediation-blocks": "REMEDIATION_DISCORD_BOT_TOKEN",
    "remediation-cycle": "--dispatch",
    "remediation-policy": "validate",
}


async def test_every_console_script_answers_help(prefect_harness: str) -> None:
    results = await asyncio.gather(
        *(run([str(BIN / name), "--help"], prefect_harness, timeout=60) for name in HELP)
    )
    for (name, expected), result in zip(HELP.items(), results, strict=True):
        assert expected in ok(result), f"{name} --help:\n{result.stdout}"


# --- remediation-blocks -------------------------------------------------------------------
NAMES = BlockNames(
    prometheus="t13-prometheus", loki="t13-loki", discord="t13-discord", claude="t13-claude",
    awx="t13-awx", semaphore="t13-semaphore", ledger="t13-ledger",
)  # fmt: skip


async def blocks_command(api_url: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return await run(
        [str(BIN / "remediation-blocks"), "--blocks", NAMES.model_dump_json()], api_url, env
    )


async def blocks_main(argv: list[str], environ: dict[str, str]) -> tuple[int, str]:
    """`remediation-blocks` in this process (in a thread: it runs its own event loop)."""
    out, err = io.StringIO(), io.StringIO()

    def call() -> int:
        with redirect_stdout(out), redirect_stderr(err):
            return setup.main(argv, environ)

    code = await asyncio.to_thread(call)
    return code, out.getvalue() + err.getvalue()


async def test_blocks_command_creates_then_updates_from_the_environment(
    prefect_harness: str, tmp_path: Path
) -> None:
    ledger_url = f"sqlite+aiosqlite:///{tmp_path}/ledger.db"
    out = ok(await blocks_command(prefect_harness, {
        "REMEDIATION_PROMETHEUS_URL": "http://prometheus.example:9090",
        "REMEDIATION_PROMETHEUS_BEARER_TOKEN": "prom-token-1",
        "REMEDIATION_DISCORD_BOT_TOKEN": "bot-token-1",
        "REMEDIATION_DISCORD_APPROVALS_CHANNEL_ID": "200",
        "REMEDIATION_DISCORD_GUILD_ID": "100",
        "REMEDIATION_DISCORD_APPROVER_ROLE_IDS": "300, 301",
        "ANTHROPIC_API_KEY": "sk-ant-from-the-usual-variable",
        "REMEDIATION_LEDGER_URL": ledger_url,
    }))  # fmt: skip
    assert "created PrometheusConnection 't13-prometheus'" in out
    assert "skipped awx" in out and "skipped loki" in out

    prometheus = await PrometheusConnection.aload(NAMES.prometheus)
    assert prometheus.url == "http://prometheus.example:9090"
    assert prometheus.bearer_token.get_secret_value() == "prom-token-1"
    discord = await DiscordBot.aload(NAMES.discord)
    assert (discord.guild_id, discord.approver_role_ids) == ("100", ["300", "301"])
    assert discord.bot_token.get_secret_value() == "bot-token-1"
    claude = await ClaudeCredentials.aload(NAMES.claude)
    assert claude.api_key.get_secret_value() == "sk-ant-from-the-usual-variable"
    ledger = await LedgerDatabase.aload(NAMES.ledger)
    assert ledger.url.get_secret_value() == ledger_url

    # rotating one token changes only that field (in-process: the same main, faster)
    code, out = await blocks_main(
        ["--blocks", NAMES.model_dump_json()],
        {"REMEDIATION_PROMETHEUS_BEARER_TOKEN": "prom-token-2"},
    )
    assert code == 0
    assert "updated PrometheusConnection 't13-prometheus' (bearer_token)" in out
    prometheus = await PrometheusConnection.aload(NAMES.prometheus)
    assert prometheus.url == "http://prometheus.example:9090"
    assert prometheus.bearer_token.get_secret_value() == "prom-token-2"
    assert (await LedgerDatabase.aload(NAMES.ledger)).url.get_secret_value() == ledger_url


async def test_blocks_command_saves_nothing_when_a_variable_is_wrong(prefect_harness: str) -> None:
    names = NAMES.model_copy(update={"prometheus": "t13-never-prometheus"})
    code, out = await blocks_main(
        ["--blocks", names.model_dump_json()],
        {
            "REMEDIATION_PROMETHEUS_URL": "http://prometheus.example:9090",  # valid
            "REMEDIATION_SEMAPHORE_URL": "http://semaphore.example",  # token missing
            "REMEDIATION_SEMAPHORE_PROJECT_ID": "not-a-number",
        },
    )
    assert code == 2
    assert "REMEDIATION_SEMAPHORE_API_TOKEN" in out
    assert "REMEDIATION_SEMAPHORE_PROJECT_ID" in out
    with pytest.raises(ValueError):  # the valid block was not saved either
        await PrometheusConnection.aload(names.prometheus)
