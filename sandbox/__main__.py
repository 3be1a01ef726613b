"""`python -m sandbox` / `remediation-sandbox`: the whole sandbox in one process.

Starts the simulated fleet, Debian's real Prometheus scraping it, and the sandbox Loki,
Discord, Slack, Anthropic (the sandbox model: a simulation, not Claude), AWX and Semaphore
on loopback; prints their URLs and the `REMEDIATION_*` variables that point
`remediation-blocks` at them (Slack's apart, with how to ask in Slack; the --env-file
holds them all); runs until
Ctrl-C or SIGTERM, then stops everything (Prometheus by its PID).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from sandbox.demo_stack import DEFAULT_HOSTS, SandboxStack


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="remediation-sandbox",
        description="Start every sandbox server (simulated fleet, real Prometheus, Loki, "
        "Discord, Slack, the sandbox model standing in for Claude, AWX, Semaphore) on 127.0.0.1, "
        "print their URLs, and stop them all on Ctrl-C.",
        epilog="Then, in another shell: source the --env-file and run `remediation-blocks` "
        "to save blocks pointing at this sandbox.",
    )
    parser.add_argument(
        "--hosts",
        default=",".join(DEFAULT_HOSTS),
        help="comma-separated simulated host names (default: %(default)s)",
    )
    parser.add_argument(
        "--scrape-interval",
        type=float,
        default=1.0,
        help="Prometheus scrape interval in seconds (default: %(default)s)",
    )
    parser.add_argument(
        "--scenario", help="a JSON or YAML scenario (host -> state patch) to apply at start"
    )
    parser.add_argument(
        "--env-file",
        help="also write the REMEDIATION_* variables (Slack's included) as `export` lines here",
    )
    parser.add_argument(
        "--state", help="write URLs, PIDs, people and variables as JSON here once ready"
    )
    return parser


def _write(path: str, text: str) -> None:
    """Write atomically, so a reader polling for the file never sees half of it."""
    target = Path(path)
    tmp = target.with_name(target.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, target)


def _report(info: dict[str, Any]) -> str:
    urls = info["urls"]
    people = ", ".join(
        f"{p['name']}{' (approver)' if p['approver'] else ''}" for p in info["discord"]["people"]
    )
    lines = [
        "sandbox ready (all on 127.0.0.1; every server here is a stand-in except Prometheus):",
        f"  fleet exporter   {urls['fleet']}   hosts: {', '.join(info['hosts'])}",
        f"  Prometheus       {urls['prometheus']}   (real, PID {info['prometheus_pid']})",
        f"  Loki             {urls['loki']}",
        f"  Discord          {urls['discord']}   people: {people}",
        f"  Slack            {urls['slack']}   channel {info['slack']['channel_id']}, "
        f"approvers group {info['slack']['approvers_usergroup_id']}",
        f"  Anthropic API    {urls['anthropic']}   answers: {info['model']}",
        f"  AWX              {urls['awx']}",
        f"  Semaphore        {urls['semaphore']}",
        "",
        "blocks pointing at this sandbox: export these, then run `remediation-blocks`",
    ]
    lines += [f"  export {k}={shlex.quote(v)}" for k, v in info["env"].items()]
    lines += ["", *slack_lines(info["slack"])]
    return "\n".join(lines)


def _slack_block() -> str:
    # imported late: blocks imports Prefect, and `--help` should answer at once
    from blocks.names import SLACK_BLOCK

    return SLACK_BLOCK


def slack_lines(slack: dict[str, Any]) -> list[str]:
    """How to ask in the sandbox Slack: its variables and the flows' block names."""
    block = _slack_block()
    approvers = ", ".join(p["name"] for p in slack["people"] if p["approver"])
    others = ", ".join(p["name"] for p in slack["people"] if not p["approver"])
    lines = [
        f"Slack (opt-in): channel {slack['channel_id']}, bot {slack['bot']}; approvers are "
        f"the members of user group {slack['approvers_usergroup_id']} ({approvers}); "
        f"{others} and the bot {slack['other_bot']} are not",
        "to ask in Slack, also export these (remediation-blocks then saves the SlackBot "
        f"block {block!r}):",
    ]
    lines += [f"  export {k}={shlex.quote(v)}" for k, v in slack["env"].items()]
    lines += [
        "and name it in the flows' `blocks` parameter (deployments and listener):",
        f'  Slack as well as Discord: {{"slack": "{block}"}}',
        f'  Slack alone:              {{"discord": null, "slack": "{block}"}}',
        "(`make demo DEMO_ARGS='--channel slack'` or `--channel both` does all of this)",
    ]
    return lines


def env_file_text(info: dict[str, Any]) -> str:
    """`export` lines: every block's variables, then Slack's (saved by remediation-blocks,
    but asked in only once the flows' blocks name it)."""
    block = _slack_block()
    lines = [f"export {k}={shlex.quote(v)}" for k, v in info["env"].items()]
    lines.append(
        f"# Slack: saved as block {block!r}; used once the flows' blocks name it "
        f'({{"slack": "{block}"}}; Slack alone: also "discord": null)'
    )
    lines += [f"export {k}={shlex.quote(v)}" for k, v in info["slack"]["env"].items()]
    return "".join(f"{line}\n" for line in lines)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    hosts = [h.strip() for h in args.hosts.split(",") if h.strip()]
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    stack = SandboxStack(hosts=hosts, scrape_interval=args.scrape_interval)
    try:
        stack.start()
        if args.scenario:
            stack.fleet.load_scenario(args.scenario)
        info = {**stack.describe(), "pid": os.getpid()}
        if args.env_file:
            _write(args.env_file, env_file_text(info))
        if args.state:
            _write(args.state, json.dumps(info, indent=2))
        print(_report(info), flush=True)
        print("\nCtrl-C stops everything.", flush=True)
        while not stop.wait(0.5):
            if not stack.prometheus.running:
                print("Prometheus exited:\n" + stack.prometheus.log_tail(), file=sys.stderr)
                return 1
    finally:
        stack.stop()
        print("sandbox stopped", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
