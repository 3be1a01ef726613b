"""`remediation-policy`: validate a policy file (YAML or JSON), save it as the policy
block the deployments name, or print the defaults."""

from __future__ import annotations

import argparse
import json
import sys

import yaml

from blocks.policy import DEFAULT_POLICY_BLOCK, RemediationPolicy
from core.errors import ConfigError
from core.policy import load_policy, policy_hash
from tasks.policy_file import read_policy_file


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="remediation-policy",
        description="Validate a policy file and print its effective policy and hash.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    check = sub.add_parser("validate", help="validate a YAML or JSON policy file")
    check.add_argument("file")
    check.add_argument("--print", action="store_true", help="print the effective policy")
    apply = sub.add_parser(
        "apply",
        help="validate a policy file and save it as the RemediationPolicy block every "
        "deployment names (needs PREFECT_API_URL)",
    )
    apply.add_argument("file")
    apply.add_argument(
        "--name",
        default=DEFAULT_POLICY_BLOCK,
        help=f"block document name (default {DEFAULT_POLICY_BLOCK}; deployments name it "
        "in blocks.policy)",
    )
    defaults = sub.add_parser("defaults", help="print the default policy (YAML)")
    defaults.add_argument("--json", action="store_true", help="print it as JSON instead")
    args = parser.parse_args(argv)
    if args.command == "defaults":
        data = load_policy({}).model_dump(mode="json")
        if args.json:
            print(json.dumps(data, indent=2, ensure_ascii=False))
        else:
            print(yaml.safe_dump(data, sort_keys=False, allow_unicode=True))
        return 0
    try:
        policy = load_policy(read_policy_file(args.file))
    except ConfigError as exc:
        print(f"invalid: {exc}", file=sys.stderr)
        return 1
    print(f"valid: {len(policy.catalog)} catalog entries, policy hash {policy_hash(policy)}")
    if args.command == "apply":
        return _apply(read_policy_file(args.file), args.name)
    if args.print:
        print(yaml.safe_dump(policy.model_dump(mode="json"), sort_keys=False, allow_unicode=True))
    return 0


def _apply(document: dict, name: str) -> int:
    """Save the document as the named block (created, or overwritten in place)."""
    block = RemediationPolicy(document=document)
    try:
        block.save(name, overwrite=True)
    except Exception as exc:  # noqa: BLE001 - no server, bad URL: say it, exit non-zero
        print(f"could not save block {name!r}: {exc}", file=sys.stderr)
        return 1
    print(f"saved RemediationPolicy {name!r} (deployments name it in blocks.policy)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
