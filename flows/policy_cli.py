"""`remediation-policy`: validate a policy file (YAML or JSON) before deploying it."""

from __future__ import annotations

import argparse
import json
import sys

import yaml

from core.errors import ConfigError
from core.policy import load_policy, policy_hash
from flows.policy_file import read_policy_file


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="remediation-policy",
        description="Validate a policy file and print its effective policy and hash.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    check = sub.add_parser("validate", help="validate a YAML or JSON policy file")
    check.add_argument("file")
    check.add_argument("--print", action="store_true", help="print the effective policy")
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
    if args.print:
        print(yaml.safe_dump(policy.model_dump(mode="json"), sort_keys=False, allow_unicode=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
