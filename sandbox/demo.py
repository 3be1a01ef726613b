"""`make demo` (`python -m sandbox.demo`): the whole loop on this machine, in minutes.

It starts, as separate processes, a local Prefect server (UI on 127.0.0.1:4200), the
sandbox (`python -m sandbox`: the simulated fleet, real Prometheus, Loki, Discord, the
sandbox model standing in for Claude — a simulation —, AWX and Semaphore), a process
worker and the approval listener; saves the blocks with `remediation-blocks`; deploys
with `prefect deploy`; breaks four simulated hosts; triggers one cycle; and, while a
simulated operator reacts in the sandbox Discord (`--channel slack`: the sandbox Slack;
`--channel both`: each action asked in both, reacted to in one) — or, with `--manual`, a
person decides in the Prefect UI —, prints each stage as it happens. It ends with a
summary table (with `--channel slack|both`, what each channel was sent) and the UI
links, then stops everything it started, by PID (also on Ctrl-C).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shlex
import shutil
import signal
import socket
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import yaml

from sandbox.demo_channels import CHANNELS, ChatChoice
from sandbox.demo_follow import Follower, listener_alive, rule_hits
from sandbox.demo_procs import Processes, wait_for
from sandbox.demo_profile import BREACHES, OPERATOR_PLAN, POLICY_FILE, PROFILES, SCENARIO, Profile
from sandbox.demo_report import DemoResult

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
POOL = "remediation"


def _tool(name: str) -> str:
    """A console script of this virtualenv (falls back to PATH)."""
    local = BIN / name
    return str(local) if local.exists() else (shutil.which(name) or name)


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        # as uvicorn binds: TIME_WAIT leftovers of an earlier run must not count as busy
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


class Demo:
    """One run of the demo; `run()` then, always, `stop()`."""

    def __init__(
        self,
        profile: Profile,
        *,
        port: int,
        workdir: Path,
        say: Callable[[str], None] = print,
        chat: ChatChoice = ChatChoice(),  # noqa: B008 - frozen
    ) -> None:
        self.profile, self.port, self.workdir, self._print = profile, port, workdir, say
        self.chat = chat
        self.ui = f"http://127.0.0.1:{port}"
        self.api = f"{self.ui}/api"
        self.ledger_url = f"sqlite+aiosqlite:///{workdir / 'ledger.db'}"
        self.policy = profile.policy()
        self.t0 = time.monotonic()
        self.stages: list[tuple[str, float]] = []
        self.sandbox: dict[str, Any] = {}
        workdir.mkdir(parents=True, exist_ok=True)
        (workdir / "prefect-home").mkdir(exist_ok=True)
        self.procs = Processes(workdir, self._env())

    # --- printing -----------------------------------------------------------------------
    def say(self, message: str) -> None:
        self._print(f"[{time.monotonic() - self.t0:6.1f}s] {message}")

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        self._print(f"\n== {name}")
        started = time.monotonic()
        yield
        self.stages.append((name, time.monotonic() - started))

    def _env(self) -> dict[str, str]:
        env = {
            k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "REMEDIATION_"))
        }
        return {
            **env,
            "PREFECT_HOME": str(self.workdir / "prefect-home"),
            "PREFECT_API_URL": self.api,
            "PREFECT_UI_URL": self.ui,
            "PREFECT_SERVER_API_HOST": "127.0.0.1",
            "PREFECT_SERVER_API_PORT": str(self.port),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_WORKER_QUERY_SECONDS": "1",
            "REMEDIATION_LEDGER_URL": self.ledger_url,
            "PYTHONUNBUFFERED": "1",
        }

    def announce(self) -> None:
        p = self.profile
        self._print(f"prefect-remediation demo — profile '{p.name}', everything on 127.0.0.1")
        self._print(f"working files and logs: {self.workdir}")
        self._print(
            f"\nThe declared demo policy ({POLICY_FILE.relative_to(REPO)}"
            + (f", deadlines overridden: {p.deadlines}" if p.deadlines else "")
            + "); production defaults are unchanged:\n"
        )
        self._print(yaml.safe_dump(self.policy, sort_keys=False, allow_unicode=True, width=100))
        settings = p.action_settings(self.ui)
        self._print(
            f"action settings: settle {settings['settle_seconds']} s after each job, polls "
            f"every {settings['job_poll_seconds']} s; listener polls every {p.poll_seconds} s"
        )
        where = self.chat.title
        if self.chat.name == "both":
            where += " (each action asked in both, reacted to in one)"
        who = (
            f"a simulated operator reacts in the sandbox {where}"
            if p.operator
            else f"YOU decide every action in the Prefect UI (nobody reacts in {self.chat.title})"
        )
        self._print(f"decisions: {who}")

    # --- the stages ---------------------------------------------------------------------
    # Independent steps overlap (each is its own process): hosts break as soon as the
    # sandbox is up, so the sustained-for windows fill while Prefect is set up.
    def start_services(self) -> None:
        if not _port_free(self.port):
            raise RuntimeError(
                f"port {self.port} is in use: stop the other Prefect server, or run "
                f"`make demo DEMO_ARGS='--port 4300'`"
            )
        state = self.workdir / "sandbox.json"
        server = self.procs.start(
            "prefect-server",
            [_tool("prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(self.port)],
        )
        self.say(f"prefect server start --host 127.0.0.1 --port {self.port}  (PID {server.pid})")
        sandbox = self.procs.start(
            "sandbox",
            [sys.executable, "-m", "sandbox", "--state", str(state),
             "--scrape-interval", str(self.profile.scrape_interval)],
            cwd=REPO,
        )  # fmt: skip
        self.say(f"python -m sandbox  (PID {sandbox.pid})")
        wait_for(state.exists, timeout=90, what="the sandbox", child=sandbox)
        self.sandbox = json.loads(state.read_text())
        for name, url in self.sandbox["urls"].items():
            self.say(f"  sandbox {name:<10} {url}")
        self.say(f"  the model is the {self.sandbox['model']}")
        self.break_hosts()
        wait_for(
            lambda: httpx.get(f"{self.api}/health", timeout=2).status_code == 200,
            timeout=120, what="the Prefect server", child=server,
        )  # fmt: skip
        api_url = httpx.get(f"{self.ui}/ui-settings", timeout=5).json().get("api_url")
        self.say(f"Prefect server ready: UI {self.ui} (its API: {api_url})")

    def break_hosts(self) -> None:
        answer = httpx.post(f"{self.sandbox['urls']['fleet']}/_control/scenario", json=SCENARIO)
        answer.raise_for_status()
        for label in BREACHES:
            self.say(f"broke: {label}")

    def set_up_prefect(self) -> None:
        """Work pool, then deploy and the worker; blocks, then the listener; all at once."""
        prefect = _tool("prefect")
        blocks = self.procs.start(
            "remediation-blocks",
            [sys.executable, "-m", "blocks.setup", *self.chat.blocks_args()],
            env=self.chat.blocks_env(self.sandbox),
        )
        policy_file = self.workdir / "policy.yaml"
        policy_file.write_text(yaml.safe_dump(self.policy, sort_keys=False, allow_unicode=True))
        apply = self.procs.start(
            "remediation-policy", [_tool("remediation-policy"), "apply", str(policy_file)]
        )
        pool = self.procs.start(
            "work-pool", [prefect, "work-pool", "create", POOL, "--type", "process"]
        )
        self.procs.finish(pool, timeout=120)
        self.say(f"prefect work-pool create {POOL} --type process")
        prefect_file = self.workdir / "prefect.yaml"
        prefect_file.write_text(self._deployment_file())
        deploy = self.procs.start(
            "deploy",
            [prefect, "--no-prompt", "deploy", "--all", "--prefect-file", str(prefect_file)],
            cwd=REPO,
        )
        self.say("prefect --no-prompt deploy --all  (prefect.yaml with the demo's parameters)")
        if not self.chat.is_default:
            names = json.dumps(self.chat.block_names())
            self.say(f"  every deployment's blocks: {names} (asked in {self.chat.title})")
        worker = self.procs.start(
            "worker",
            [prefect, "worker", "start", "--pool", POOL, "--name", "demo-worker"],
            env={"REMEDIATION_CHECKOUT": str(REPO)},
            cwd=REPO,
        )
        self.say(
            f"REMEDIATION_CHECKOUT={REPO} prefect worker start --pool {POOL}  (PID {worker.pid})"
        )
        out = self.procs.finish(blocks, timeout=120)
        if self.chat.is_default:
            self.say("remediation-blocks  (the REMEDIATION_* variables the sandbox printed)")
        else:
            self.say(
                f"remediation-blocks {shlex.join(self.chat.blocks_args())}  (the REMEDIATION_* "
                f"variables the sandbox printed, for {self.chat.title})"
            )
        for line in out.strip().splitlines():
            self.say(f"  {line}")
        out = self.procs.finish(apply, timeout=120)
        self.say(f"remediation-policy apply {policy_file.name}  (the RemediationPolicy block)")
        for line in out.strip().splitlines():
            self.say(f"  {line}")
        listener = self.procs.start(
            "listener",
            [_tool("remediation-listener"), "--poll-seconds", str(self.profile.poll_seconds),
             "--blocks", json.dumps({"policy": "remediation-policy", **self.chat.block_names()})],
            # the policy block is apply's default; the chat blocks are the demo's choice
            cwd=REPO,
        )  # fmt: skip
        self.say(
            f"remediation-listener --poll-seconds {self.profile.poll_seconds}  (PID {listener.pid})"
        )
        out = self.procs.finish(deploy, timeout=180)
        for name, verb in re.findall(r"Deployment '([^']+)' successfully (\w+)", out):
            self.say(f"  deployment {name} {verb}")

        def worker_online() -> bool:
            return bool(self.call("POST", f"/work_pools/{POOL}/workers/filter", {}))

        wait_for(worker_online, timeout=90, what="the worker", child=worker)
        self.say("worker online")
        wait_for(
            lambda: listener_alive(self.ledger_url), timeout=90, what="the listener", child=listener
        )
        self.say("listener polling")

    def _deployment_file(self) -> str:
        """prefect.yaml with the demo's settings (the policy is the block every deployment
        names, saved by `remediation-policy apply`); schedules off (the demo
        triggers its one cycle itself, and a quarter-hour must not start another)."""
        data = yaml.safe_load((REPO / "prefect.yaml").read_text())
        settings = self.profile.action_settings(self.ui)
        for d in data["deployments"]:
            params = d["parameters"] = dict(d["parameters"])
            if self.chat.block_names():  # asked in Slack: the flows name its block
                params["blocks"] = {**params["blocks"], **self.chat.block_names()}
            for schedule in d.get("schedules") or []:
                schedule["active"] = False
            if d["name"] == "remediation-cycle":
                # the action deployment's own settings below apply (merged, not replaced);
                # the demo runs its own listener process, so the cycle starts none
                params["dispatch_options"] = {
                    k: v for k, v in params["dispatch_options"].items() if k != "listener"
                }
            elif d["name"] == "remediate-action":
                params["settings"] = settings
            elif d["name"] == "approval-listener":
                params["settings"] = {"poll_seconds": self.profile.poll_seconds, "run_seconds": 295}
        data.pop("definitions", None)
        return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)

    def wait_for_breaches(self) -> None:
        prometheus = self.sandbox["urls"]["prometheus"]
        expected = {"failed_unit": {"web-02", "db-01"}, "disk": {"db-01"}, "cpu": {"web-01"}}
        seen: dict[str, set[str]] = {}

        def all_seen() -> bool:
            seen.update(rule_hits(prometheus, self.policy, list(expected)))
            return all(expected[c] <= seen.get(c, set()) for c in expected)

        wait_for(all_seen, timeout=90, what=f"Prometheus to show {expected}", interval=0.5)
        self.say(
            "Prometheus shows every breach through the policy's rules (sustained-for included)"
        )

    def call(self, method: str, path: str, json: Any = None, attempts: int = 6) -> Any:
        """The Prefect REST API, retried as Prefect's own client does: a busy SQLite
        server answers 503 ("database is locked") and wants the request again."""
        for attempt in range(attempts):
            try:
                answer = httpx.request(method, f"{self.api}{path}", json=json, timeout=15)
                if answer.status_code not in (429, 503):
                    answer.raise_for_status()
                    return answer.json()
            except httpx.TransportError:
                if attempt == attempts - 1:
                    raise
            time.sleep(min(2**attempt, 8))
        raise RuntimeError(f"{method} {path}: the Prefect server stayed busy ({answer.text})")

    def trigger_cycle(self) -> str:
        dep = self.call("GET", "/deployments/name/remediation-cycle/remediation-cycle")
        run = self.call("POST", f"/deployments/{dep['id']}/create_flow_run", {"tags": ["demo"]})
        self.say(
            f"cycle triggered: flow run {run['name']} "
            "(= prefect deployment run remediation-cycle/remediation-cycle)"
        )
        self.say(f"  {self.ui}/v2/runs/flow-run/{run['id']}")
        return str(run["id"])

    # --- the whole run ------------------------------------------------------------------
    def run(self) -> DemoResult:
        self.announce()
        with self.stage("start the Prefect server and the sandbox; break four hosts"):
            self.start_services()
        with self.stage("work pool, blocks, deploy, a process worker, the approval listener"):
            self.set_up_prefect()
        with self.stage("wait until Prometheus sees the breaches"):
            self.wait_for_breaches()
        follower = Follower(self, OPERATOR_PLAN if self.profile.operator else None)
        with self.stage("cycle and actions: detect, analyse, approve, run, verify"):
            cycle_id = self.trigger_cycle()
            asyncio.run(follower.follow(cycle_id))
        self.stages.append(("total", time.monotonic() - self.t0))
        return follower.result(self.stages)

    def stop(self) -> None:
        self._print("\n== stop everything the demo started")
        self.procs.stop_all(self.say)


def run_demo(
    profile: Profile,
    *,
    port: int,
    workdir: Path,
    say: Callable[[str], None] = print,
    chat: ChatChoice = ChatChoice(),  # noqa: B008 - frozen
) -> DemoResult:
    """Run the demo and always stop what it started; answers the result."""
    demo = Demo(profile, port=port, workdir=workdir, say=say, chat=chat)
    try:
        result = demo.run()
        say("\n" + result.summary)
    finally:
        demo.stop()
    result.stopped_pids = list(demo.procs.stopped)
    return result


# What a run leaves in its working directory; only these are removed before the next
# (never the directory itself: --workdir may name one that holds other things).
RUN_FILES = ("prefect-home", "ledger.db", "ledger.db-wal", "ledger.db-shm", "sandbox.json",
             "prefect.yaml", "policy.yaml")  # fmt: skip


def _clean(workdir: Path) -> None:
    for name in RUN_FILES:
        path = workdir / name
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    for log in workdir.glob("*.log"):
        log.unlink()


def _interrupt(*_: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m sandbox.demo",
        description="Run the whole remediation loop against the sandbox, then stop it all.",
    )
    parser.add_argument(
        "--manual",
        action="store_true",
        help="no simulated operator: decide each action yourself in the Prefect UI",
    )
    parser.add_argument("--profile", choices=sorted(PROFILES), help="timings (default: demo)")
    parser.add_argument(
        "--channel",
        choices=CHANNELS,
        default="discord",
        help="where approval is asked: the sandbox Discord (default), Slack, or both",
    )
    parser.add_argument("--port", type=int, default=4200, help="Prefect server port (4200)")
    parser.add_argument(
        "--workdir",
        type=Path,
        default=REPO / ".demo",
        help="logs and state; the previous run's are removed at start",
    )
    args = parser.parse_args(argv)
    profile = PROFILES[args.profile or ("manual" if args.manual else "demo")]
    _clean(args.workdir)
    # Ctrl-C and SIGTERM alike: stop where we are, then stop every child (see finally).
    # Our own handler, not asyncio.run's: with that one (it cancels the running task), a
    # Ctrl-C during the follow phase was seen to be lost and the demo ran on to its end.
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    started = time.monotonic()
    try:
        result = run_demo(
            profile, port=args.port, workdir=args.workdir, chat=ChatChoice(args.channel)
        )
    except KeyboardInterrupt:
        print("\ninterrupted: everything the demo started has been stopped")
        return 130
    except RuntimeError as exc:
        print(f"\ndemo failed: {exc}\nlogs: {args.workdir}", file=sys.stderr)
        return 1
    print(f"\ndemo finished in {time.monotonic() - started:.0f} s; logs in {args.workdir}")
    if profile.operator and not result.shows_the_whole_story():
        print("the summary lacks an effective verdict, a rejection or a deadline default")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
