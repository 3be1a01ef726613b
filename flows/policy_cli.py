"""`remediation-policy`: validate a policy file (YAML or JSON) before deploying it."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import yaml

from core.errors import ConfigError
from core.policy import load_policy, policy_hash


def read_policy_file(path: str | Path) -> dict[str, Any]:
    """Policy data from a YAML or JSON file (JSON is YAML); errors name the file."""
    try:
        data = yaml.safe_load(Path(path).read_text())
    except yaml.YAMLError as exc:
        raise ConfigError("policy", f"{path} is not valid YAML/JSON: {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError("policy", f"{path} must hold a mapping at the top level")
    return data


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="remediation-policy",
        description="Validate a policy file and print its effective policy and hash.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    check = sub.add_parser("validate", help="validate a YAML or JSON policy file")
    check.add_argument("file")
    check.add_argument("--print", action="store_true", help="print the effective policy")
    sub.add_parser("defaults", help="print the default policy as YAML")
    args = parser.parse_args(argv)
    if args.command == "defaults":
        print(
            yaml.safe_dump(
                load_policy({}).model_dump(mode="json"), sort_keys=False, allow_unicode=True
            )
        )
        return 0
    try:
        policy = load_policy(read_policy_file(args.file))
    except (ConfigError, OSError) as exc:
        print(f"invalid: {exc}", file=sys.stderr)
        return 1
    print(f"valid: {len(policy.catalog)} catalog entries, policy hash {policy_hash(policy)}")
    if args.print:
        print(yaml.safe_dump(policy.model_dump(mode="json"), sort_keys=False, allow_unicode=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
