"""Message payload rules of the sandbox Discord: Discord's limits and error shapes.

`check_message` answers what Discord answers for an oversized or malformed message
body: `{"code": 50035, "errors": {...}, "message": "Invalid Form Body"}` with the
errors nested by JSON path (`embeds.0.fields.3.value._errors`), or 50006 for an empty
message. `rich_embeds` turns accepted embeds into what Discord echoes back, and
`pings` says whom a message would notify under its `allowed_mentions`.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

CONTENT_MAX = 2000
EMBEDS_MAX = 10
TITLE_MAX = 256
DESCRIPTION_MAX = 4096
FIELDS_MAX = 25
FIELD_NAME_MAX = 256
FIELD_VALUE_MAX = 1024
FOOTER_MAX = 2048
AUTHOR_NAME_MAX = 256
EMBED_TOTAL_MAX = 6000

Path = tuple[str | int, ...]


class FormErrors:
    """Collects errors into Discord's nested `errors` object."""

    def __init__(self) -> None:
        self.tree: dict[str, Any] = {}

    def add(self, path: Path, code: str, message: str) -> None:
        node = self.tree
        for part in path:
            node = node.setdefault(str(part), {})
        node.setdefault("_errors", []).append({"code": code, "message": message})

    def max_length(self, path: Path, value: Any, limit: int) -> None:
        if isinstance(value, str | list) and len(value) > limit:
            self.add(path, "BASE_TYPE_MAX_LENGTH", f"Must be {limit} or fewer in length.")

    def body(self) -> dict[str, Any]:
        return {"code": 50035, "errors": self.tree, "message": "Invalid Form Body"}


def check_message(body: Any, *, partial: bool) -> dict[str, Any] | None:
    """Discord's 400 body for a create (or, with `partial`, an edit) payload; None if valid."""
    if not isinstance(body, dict):
        return {"code": 50109, "message": "The request body contains invalid JSON."}
    errors = FormErrors()
    content = body.get("content")
    if content is not None and not isinstance(content, str):
        errors.add(("content",), "BASE_TYPE_STRING", "Must be a string.")
    errors.max_length(("content",), content, CONTENT_MAX)
    embeds = body.get("embeds")
    if embeds is not None:
        if not isinstance(embeds, list):
            errors.add(("embeds",), "BASE_TYPE_LIST", "Must be a list.")
        else:
            errors.max_length(("embeds",), embeds, EMBEDS_MAX)
            for i, embed in enumerate(embeds):
                _check_embed(errors, i, embed)
            if not errors.tree and _embeds_total(embeds) > EMBED_TOTAL_MAX:
                errors.add(
                    ("embeds",),
                    "MAX_EMBED_SIZE_EXCEEDED",
                    f"Embed size exceeds maximum size of {EMBED_TOTAL_MAX}",
                )
    if errors.tree:
        return errors.body()
    if not partial and not content and not embeds:
        return {"message": "Cannot send an empty message", "code": 50006}
    return None


def _check_embed(errors: FormErrors, i: int, embed: Any) -> None:
    at: Path = ("embeds", i)
    if not isinstance(embed, dict):
        errors.add(at, "MODEL_TYPE_CONVERT", "Only dictionaries may be used in a ModelType")
        return
    errors.max_length((*at, "title"), embed.get("title"), TITLE_MAX)
    errors.max_length((*at, "description"), embed.get("description"), DESCRIPTION_MAX)
    color = embed.get("color")
    if color is not None and (not isinstance(color, int) or not 0 <= color <= 0xFFFFFF):
        errors.add((*at, "color"), "NUMBER_TYPE_MAX", "int value should be <= 16777215.")
    stamp = embed.get("timestamp")
    if stamp is not None and _parse_iso(stamp) is None:
        errors.add(
            (*at, "timestamp"),
            "DATE_TIME_TYPE_PARSE",
            f"Could not parse {stamp}. Should be ISO8601.",
        )
    footer = embed.get("footer")
    if footer is not None:
        if not isinstance(footer, dict) or not footer.get("text"):
            errors.add((*at, "footer", "text"), "BASE_TYPE_REQUIRED", "This field is required")
        else:
            errors.max_length((*at, "footer", "text"), footer["text"], FOOTER_MAX)
    author = embed.get("author")
    if isinstance(author, dict):
        errors.max_length((*at, "author", "name"), author.get("name"), AUTHOR_NAME_MAX)
    fields = embed.get("fields") or []
    errors.max_length((*at, "fields"), fields, FIELDS_MAX)
    for j, field in enumerate(fields):
        for key, limit in (("name", FIELD_NAME_MAX), ("value", FIELD_VALUE_MAX)):
            value = field.get(key) if isinstance(field, dict) else None
            if not value:
                errors.add((*at, "fields", j, key), "BASE_TYPE_REQUIRED", "This field is required")
            errors.max_length((*at, "fields", j, key), value, limit)


def _embeds_total(embeds: list[dict[str, Any]]) -> int:
    """Discord's 6000-character budget, summed over every embed of the message."""
    total = 0
    for embed in embeds:
        total += len(embed.get("title") or "") + len(embed.get("description") or "")
        total += len((embed.get("footer") or {}).get("text") or "")
        total += len((embed.get("author") or {}).get("name") or "")
        for field in embed.get("fields") or []:
            total += len(field.get("name") or "") + len(field.get("value") or "")
    return total


def _parse_iso(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


def rich_embeds(embeds: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Embeds as Discord echoes them: `type: rich`, nulls dropped, timestamps `+00:00`."""
    out = []
    for embed in embeds:
        clean = {k: v for k, v in embed.items() if v is not None}
        if "timestamp" in clean:
            parsed = _parse_iso(clean["timestamp"])
            assert parsed is not None  # validated by check_message
            clean["timestamp"] = parsed.isoformat()
        if "fields" in clean:
            clean["fields"] = [
                {"name": f["name"], "value": f["value"], "inline": bool(f.get("inline"))}
                for f in clean["fields"]
            ]
        out.append({"type": "rich", **clean})
    return out


_USER = re.compile(r"<@!?(\d+)>")
_ROLE = re.compile(r"<@&(\d+)>")


def pings(content: str, allowed_mentions: dict[str, Any] | None) -> list[str]:
    """Who the content would notify: `user:<id>`, `role:<id>`, `everyone`.

    Without `allowed_mentions` Discord parses every mention kind; with it, only the
    kinds in `parse` plus the ids listed in `users`/`roles`. Embeds never notify.
    """
    rules = allowed_mentions if allowed_mentions is not None else {}
    parse = set(rules.get("parse", [])) if allowed_mentions is not None else None
    out: list[str] = []
    for uid in dict.fromkeys(_USER.findall(content)):
        if parse is None or "users" in parse or uid in rules.get("users", []):
            out.append(f"user:{uid}")
    for rid in dict.fromkeys(_ROLE.findall(content)):
        if parse is None or "roles" in parse or rid in rules.get("roles", []):
            out.append(f"role:{rid}")
    if ("@everyone" in content or "@here" in content) and (parse is None or "everyone" in parse):
        out.append("everyone")
    return out
