"""`python -m sandbox` / `remediation-sandbox`: the whole sandbox in one process.

Starts the simulated fleet, Debian's real Prometheus scraping it, and the sandbox Loki,
Discord, Slack, Anthropic (the sandbox model: a simulation, not Claude), AWX and Semaphore
on loopback; prints their URLs and the `REMEDIATION_*` variables that point
`remediation-blocks` at them (Slack's apart, to add when asking in Slack); runs until
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
        "--env-file", help="also write the REMEDIATION_* variables as `export` lines here"
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
    lines += ["", "to ask in Slack as well, also export these:"]
    lines += [f"  export {k}={shlex.quote(v)}" for k, v in info["slack"]["env"].items()]
    return "\n".join(lines)


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
            _write(
                args.env_file,
                "".join(f"export {k}={shlex.quote(v)}\n" for k, v in info["env"].items()),
            )
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
