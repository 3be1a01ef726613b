"""The one loader of policy files: every command and flow that reads one uses it.

Format, decided by the name first: `.json` is JSON, `.yaml` or `.yml` is YAML; any other
name (`/dev/stdin`, `policy.txt`) is JSON when its first non-blank character is `{`,
else YAML. Each format is read by its own parser: PyYAML reads most JSON too, but it
turns the `"\\ud83d\\udfe2"` escape `json.dumps` writes for 🟢 (a surrogate pair) into two
lone surrogates, which `remediation-policy validate` accepted and the cycle then could
not encode. The file is UTF-8 (a leading byte-order mark is allowed).

What comes back is plain JSON data: string keys; strings, finite numbers, booleans,
nulls, lists and mappings. A surrogate pair written as two YAML escapes is joined into
its character; a lone surrogate, or a value JSON cannot carry (an unquoted YAML
timestamp, a binary, a set, a NaN or infinity), is refused. So whatever `validate`
accepts can be passed to a flow run and posted, unchanged. Every error is a
`ConfigError` naming the file (and the field).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Literal

import yaml

from core.errors import ConfigError

Format = Literal["json", "yaml"]


def policy_format(path: str | Path, text: str) -> Format:
    """JSON or YAML, by the file's suffix, else by its first non-blank character."""
    suffix = Path(path).suffix.lower()
    if suffix == ".json":
        return "json"
    if suffix in (".yaml", ".yml"):
        return "yaml"
    return "json" if text.lstrip().startswith("{") else "yaml"


def _text(value: str, where: str, name: str) -> str:
    if not any("\ud800" <= c <= "\udfff" for c in value):
        return value
    try:  # a pair of surrogate escapes is one character outside the BMP (an emoji)
        return value.encode("utf-16", "surrogatepass").decode("utf-16")
    except UnicodeDecodeError:
        raise ConfigError(
            f"policy.{where}" if where else "policy",
            f"{name}: a lone surrogate escape (\\ud800-\\udfff without its pair) is not a "
            "character; write the character itself or its full surrogate pair",
        ) from None


def _plain(value: Any, where: str, name: str) -> Any:
    """`value` as plain JSON data, or a ConfigError naming the file and the field."""
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise ConfigError(
                    f"policy.{where}" if where else "policy",
                    f"{name}: key {key!r} is a {type(key).__name__}, not a string; quote it",
                )
            key = _text(key, where, name)
            out[key] = _plain(item, f"{where}.{key}" if where else key, name)
        return out
    if isinstance(value, list):
        return [_plain(item, f"{where}[{n}]", name) for n, item in enumerate(value)]
    if isinstance(value, str):
        return _text(value, where, name)
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(
            f"policy.{where}" if where else "policy",
            f"{name}: {value} is not a finite number (JSON, which flow runs carry, has none)",
        )
    if value is None or isinstance(value, bool | int | float):
        return value
    raise ConfigError(
        f"policy.{where}" if where else "policy",
        f"{name}: a YAML {type(value).__name__} is not plain data a policy can hold; "
        "quote it to make it a string",
    )


def parse_policy_text(text: str, *, name: str, fmt: Format) -> dict[str, Any]:
    """Policy data from the text of a file called `name` (named in every error)."""
    try:
        data = json.loads(text) if fmt == "json" else yaml.safe_load(text)
    except json.JSONDecodeError as exc:
        raise ConfigError("policy", f"{name} is not valid JSON: {exc}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError("policy", f"{name} is not valid YAML: {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError("policy", f"{name} must hold a mapping at the top level")
    return _plain(data, "", name)


def read_policy_file(path: str | Path) -> dict[str, Any]:
    """Policy data from a YAML or JSON file (see the module docstring for which)."""
    name = str(path)
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError("policy", f"{name} cannot be read: {exc.strerror or exc}") from exc
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            "policy", f"{name} is not UTF-8 (byte {exc.start}: {raw[exc.start]:#04x})"
        ) from exc
    return parse_policy_text(text, name=name, fmt=policy_format(path, text))
