"""`remediation-blocks`: create or update every block from environment variables.

Each field of each block has one variable, `REMEDIATION_<BLOCK>_<FIELD>` (for example
`REMEDIATION_DISCORD_BOT_TOKEN`); `--help` lists them all with their descriptions.
A block is saved when at least one of its variables is set: an existing block document
is loaded and only the fields given are changed (so rotating one token is one
variable), a new one is built from the variables and the fields' defaults. The ledger
block is always saved (its default is a SQLite file under the Prefect home). Lists are
comma-separated; booleans are true/false. `ANTHROPIC_API_KEY` is accepted for
`REMEDIATION_CLAUDE_API_KEY`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Mapping
from typing import Any, get_args

from prefect.blocks.core import Block
from pydantic import SecretStr, ValidationError

from blocks import (
    ClaudeCredentials,
    DiscordBot,
    LedgerDatabase,
    LokiConnection,
    PrometheusConnection,
    SlackBot,
)
from blocks.job_runners import runners_with_blocks
from blocks.names import CHAT_FIELDS, SLACK_BLOCK, BlockNames

PREFIX = "REMEDIATION_"
SERVICES: dict[str, type[Block]] = {
    "prometheus": PrometheusConnection,
    "loki": LokiConnection,
    "discord": DiscordBot,
    "slack": SlackBot,
    "claude": ClaudeCredentials,
}


def kinds() -> dict[str, type[Block]]:
    """Every block kind, by `BlockNames` field: the services, every registered job
    runner's block (`blocks.job_runners`), then the ledger."""
    runners = {spec.names_field: spec.block for spec in runners_with_blocks() if spec.block}
    return {**SERVICES, **runners, "ledger": LedgerDatabase}


# Blocks a flow uses only when named (`BlockNames` default None), saved under this name
# when the variables are set and `--blocks` names none.
SAVED_AS = {"slack": SLACK_BLOCK}
ALIASES = {"REMEDIATION_CLAUDE_API_KEY": "ANTHROPIC_API_KEY"}
ALWAYS_SAVED = ("ledger",)
NEEDED_BY_FLOWS = ("prometheus", "loki", "claude", "ledger")  # and one chat channel


class SetupError(Exception):
    """A variable is malformed or a block is incomplete; the message names the variable."""


def block_name(names: BlockNames, kind: str) -> str | None:
    """The document a kind is saved as: its name in `names`, else (not given at all)
    the opt-in default; None when `names` sets it to None on purpose."""
    name = getattr(names, kind)
    if name is None and kind not in names.model_fields_set:
        return SAVED_AS.get(kind)
    return name


def variable(kind: str, field: str) -> str:
    return f"{PREFIX}{kind.upper()}_{field.upper()}"


def fields(kind: str) -> dict[str, Any]:
    return dict(kinds()[kind].model_fields)


def _is_list(annotation: Any) -> bool:
    return getattr(annotation, "__origin__", None) is list or any(
        getattr(a, "__origin__", None) is list for a in get_args(annotation)
    )


def _is_secret(annotation: Any) -> bool:
    return annotation is SecretStr or SecretStr in get_args(annotation)


def values_from_env(kind: str, environ: Mapping[str, str]) -> dict[str, Any]:
    """The fields of one block given by the environment (empty values count as unset)."""
    out: dict[str, Any] = {}
    for name, info in fields(kind).items():
        var = variable(kind, name)
        raw = environ.get(var) or environ.get(ALIASES.get(var, ""), "")
        if not raw:
            continue
        if _is_list(info.annotation):
            out[name] = [item.strip() for item in raw.split(",") if item.strip()]
        else:
            out[name] = raw
    return out


def _explain(kind: str, exc: ValidationError) -> str:
    problems = []
    for err in exc.errors():
        loc = [str(p) for p in err["loc"]]
        where = variable(kind, loc[0]) if loc else f"the {kind} variables"
        problems.append(f"{where}: {err['msg']}")
    return "; ".join(problems)


async def _existing(cls: type[Block], name: str) -> Block | None:
    try:
        return await cls.aload(name)
    except ValueError:  # no such document
        return None


async def build_block(kind: str, name: str, given: dict[str, Any], *, offline: bool) -> tuple[
    Block, bool
]:  # fmt: skip
    """The block to save (the stored one with `given` applied), and whether one was stored."""
    cls = kinds()[kind]
    current = None if offline else await _existing(cls, name)
    base: dict[str, Any] = {}
    if current is not None:
        base = {f: getattr(current, f) for f in fields(kind)}
    try:
        return cls.model_validate({**base, **given}), current is not None
    except ValidationError as exc:
        raise SetupError(_explain(kind, exc)) from exc


def _shown(block: Block) -> str:
    """Field values for a dry run; secrets stay masked (pydantic shows '**********')."""
    return ", ".join(f"{k}={getattr(block, k)!s}" for k in type(block).model_fields)


async def setup_blocks(
    environ: Mapping[str, str],
    names: BlockNames,
    *,
    only: list[str] | None = None,
    dry_run: bool = False,
) -> list[str]:
    """Save every block that has variables set (and the ledger); answers a report line each.

    Every block is validated before any is saved: one bad variable saves nothing.
    """
    report, planned, errors = [], [], []
    for kind in only or list(kinds()):
        name = block_name(names, kind)
        if name is None:
            report.append(f"skipped {kind}: no block name")
            continue
        given = values_from_env(kind, environ)
        if not given and kind not in ALWAYS_SAVED:
            report.append(f"skipped {kind}: no {variable(kind, '*')} variable set")
            continue
        try:
            block, stored = await build_block(kind, name, given, offline=dry_run)
        except SetupError as exc:
            errors.append(str(exc))
            continue
        planned.append((kind, name, given, block, stored))
    if errors:
        raise SetupError("; ".join(errors))
    for _kind, name, given, block, stored in planned:
        label = f"{type(block).__name__} {name!r}"
        if dry_run:
            report.append(f"would save {label}: {_shown(block)}")
            continue
        await block.asave(name, overwrite=True)
        changed = ", ".join(sorted(given)) or "defaults"
        report.append(f"{'updated' if stored else 'created'} {label} ({changed})")
    return report


def _variables_help() -> str:
    lines = ["environment variables (one per block field; lists are comma-separated):"]
    for kind, cls in kinds().items():
        lines.append(
            f"\n  {cls.__name__}, saved as {block_name(BlockNames(), kind)!r} "
            f'(another name: --blocks \'{{"{kind}": "NAME"}}\'):'
        )
        for name, info in fields(kind).items():
            required = " [required]" if info.is_required() else ""
            secret = " (secret)" if _is_secret(info.annotation) else ""
            alias = ALIASES.get(variable(kind, name))
            also = f" (or {alias})" if alias else ""
            lines.append(f"    {variable(kind, name)}{also}{required}{secret}")
            lines.append(f"        {info.description or ''}")
    runners = [spec.names_field for spec in runners_with_blocks()]
    lines.append(
        "\nThe flows need prometheus, loki, discord (or slack, or both), claude and ledger; "
        "slack is used once the flows' blocks name it; "
        f"{_and(runners)} {'is' if len(runners) == 1 else 'are'} needed only by catalog "
        "entries that use them."
    )
    return "\n".join(lines)


def _and(words: list[str]) -> str:
    return " and ".join(filter(None, [", ".join(words[:-1]), *words[-1:]]))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="remediation-blocks",
        description="Create or update the remediation blocks in the Prefect server "
        "(PREFECT_API_URL) from REMEDIATION_* environment variables.",
        epilog=_variables_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--blocks", help='block document names as JSON, e.g. \'{"discord": "ops-bot"}\''
    )
    parser.add_argument(
        "--only", help=f"comma-separated subset of: {', '.join(kinds())} (default: all)"
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="validate and print what would be saved (secrets masked); save nothing",
    )
    return parser


def main(argv: list[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    args = _parser().parse_args(argv)
    env = os.environ if environ is None else environ
    names = BlockNames.model_validate_json(args.blocks) if args.blocks else BlockNames()
    only = [k.strip() for k in args.only.split(",")] if args.only else None
    unknown = sorted(set(only or []) - set(kinds()))
    if unknown:
        print(f"unknown block kind(s): {', '.join(unknown)}", file=sys.stderr)
        return 2
    try:
        report = asyncio.run(setup_blocks(env, names, only=only, dry_run=args.dry_run))
    except SetupError as exc:
        print(f"not saved: {exc}", file=sys.stderr)
        return 2
    for line in report:
        print(line)
    skipped = {k for k in kinds() if any(r.startswith(f"skipped {k}:") for r in report)}
    missing = [k for k in NEEDED_BY_FLOWS if k in skipped]
    if all(c in skipped for c in CHAT_FIELDS):  # Discord or Slack is enough
        missing.append(" or ".join(CHAT_FIELDS))
    if missing and only is None:
        print(
            f"note: the flows also need {', '.join(missing)}; set their variables unless "
            "those blocks already exist",
            file=sys.stderr,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
