"""Request bodies and message payload rules of the sandbox Slack.

`read_args` merges a Web API call's arguments the way Slack reads them (query string,
then a form body, or a JSON body for the methods that accept JSON); `check_blocks`
answers Slack's `invalid_blocks` / `invalid_blocks_format` for a malformed or
oversized Block Kit array; `find_pings` says where a text or a block would notify
someone (`<!channel>`, `<!here>`, `<!everyone>`, `<@U…>`, `<!subteam^…>`).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

TEXT_MAX = 40_000
BLOCKS_MAX = 50
SECTION_TEXT_MAX = 3000
SECTION_FIELDS_MAX = 10
FIELD_TEXT_MAX = 2000
HEADER_TEXT_MAX = 150
CONTEXT_ELEMENTS_MAX = 10
ACTIONS_ELEMENTS_MAX = 25
BUTTON_TEXT_MAX = 75
BUTTON_URL_MAX = 3000
MARKDOWN_TEXT_MAX = 12_000
BLOCK_ID_MAX = 255


@dataclass
class Args:
    """A call's arguments; `json_body` says whether they came as JSON (kept as sent)."""

    values: dict[str, Any] = field(default_factory=dict)
    json_body: bool = False
    body_token: str | None = None  # a `token` form field (Slack's POST-parameter auth)
    warnings: list[str] = field(default_factory=list)
    error: str | None = None  # e.g. invalid_json

    def get(self, name: str) -> Any:
        value = self.values.get(name)
        return None if value == "" else value

    def flag(self, name: str) -> bool | None:
        """A boolean argument: JSON true/false, or form "1"/"true"/"0"/"false"."""
        value = self.values.get(name)
        if value is None or isinstance(value, bool):
            return value
        return str(value).lower() in ("1", "true")


def read_args(
    query: dict[str, list[str]], content_type: str, body: bytes, *, accepts_json: bool
) -> Args:
    """Slack's reading of a call: query-string arguments, then the body's.

    A JSON body is read only by the methods whose docs list `application/json` (the
    others see no arguments in it); a JSON body without `charset` still works but Slack
    adds the `missing_charset` warning. The token is never read from JSON.
    """
    args = Args({k: v[-1] for k, v in query.items()})
    media = content_type.split(";")[0].strip().lower()
    if media == "application/json" and body:
        if not accepts_json:
            return args
        if "charset" not in content_type.lower():
            args.warnings.append("missing_charset")
        try:
            data = json.loads(body)
        except ValueError:
            args.error = "invalid_json"
            return args
        if not isinstance(data, dict):
            args.error = "invalid_json"
            return args
        data.pop("token", None)
        args.values.update(data)
        args.json_body = True
    elif media == "application/x-www-form-urlencoded" and body:
        form = {k: v[-1] for k, v in parse_qs(body.decode(), keep_blank_values=True).items()}
        args.body_token = form.pop("token", None)
        args.values.update(form)
    return args


# --- Block Kit -------------------------------------------------------------------------
class BlockErrors:
    """Slack's `invalid_blocks` answer: one message per problem, with its JSON pointer."""

    def __init__(self) -> None:
        self.messages: list[str] = []

    def add(self, pointer: str, message: str) -> None:
        self.messages.append(f"{message} [json-pointer:{pointer}]")

    def body(self) -> dict[str, Any]:
        return {
            "ok": False,
            "error": "invalid_blocks",
            "errors": list(self.messages),
            "response_metadata": {"messages": [f"[ERROR] {m}" for m in self.messages]},
        }


def parse_blocks(raw: Any) -> tuple[list[Any] | None, dict[str, Any] | None]:
    """The blocks array from a JSON value or a form field's JSON string, or the error."""
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError:
            return None, {"ok": False, "error": "invalid_blocks_format"}
    if not isinstance(raw, list):
        return None, {"ok": False, "error": "invalid_blocks_format"}
    return raw, None


def check_blocks(blocks: list[Any]) -> dict[str, Any] | None:
    """Slack's error body for these blocks, or None when Slack would accept them."""
    errors = BlockErrors()
    if len(blocks) > BLOCKS_MAX:
        errors.add("/blocks", f"must be less than {BLOCKS_MAX + 1} items")
    seen_ids: set[str] = set()
    for i, block in enumerate(blocks):
        at = f"/blocks/{i}"
        if not isinstance(block, dict):
            errors.add(at, "expected object")
            continue
        block_id = block.get("block_id")
        if block_id is not None:
            if not isinstance(block_id, str) or not 0 < len(block_id) <= BLOCK_ID_MAX:
                errors.add(f"{at}/block_id", f"must be less than {BLOCK_ID_MAX + 1} characters")
            elif block_id in seen_ids:
                errors.add(f"{at}/block_id", "duplicate block_id")
            else:
                seen_ids.add(block_id)
        checker = _BLOCKS.get(block.get("type"))
        if checker is None:
            errors.add(f"{at}/type", "unsupported type")
            continue
        allowed, check = checker
        for key in block:
            if key not in allowed | {"type", "block_id"}:
                errors.add(f"{at}/{key}", "unknown field")
        check(errors, at, block)
    return errors.body() if errors.messages else None


def _text_object(
    errors: BlockErrors,
    at: str,
    obj: Any,
    *,
    limit: int,
    kinds: tuple[str, ...] = ("plain_text", "mrkdwn"),
) -> None:
    if not isinstance(obj, dict) or obj.get("type") not in kinds:
        errors.add(at, f"must be a text object of type {' or '.join(kinds)}")
        return
    extra = {"emoji"} if obj["type"] == "plain_text" else {"verbatim"}
    for key in obj:
        if key not in {"type", "text"} | extra:
            errors.add(f"{at}/{key}", "unknown field")
    text = obj.get("text")
    if not isinstance(text, str) or not text:
        errors.add(f"{at}/text", "must be more than 0 characters")
    elif len(text) > limit:
        errors.add(f"{at}/text", f"must be less than {limit + 1} characters")


def _section(errors: BlockErrors, at: str, block: dict[str, Any]) -> None:
    text, fields = block.get("text"), block.get("fields")
    if text is None and not fields:
        errors.add(at, "must provide either text or fields")
    if text is not None:
        _text_object(errors, f"{at}/text", text, limit=SECTION_TEXT_MAX)
    if fields is not None:
        if not isinstance(fields, list) or not fields:
            errors.add(f"{at}/fields", "must be a non-empty array")
        else:
            if len(fields) > SECTION_FIELDS_MAX:
                errors.add(f"{at}/fields", f"must be less than {SECTION_FIELDS_MAX + 1} items")
            for j, item in enumerate(fields):
                _text_object(errors, f"{at}/fields/{j}", item, limit=FIELD_TEXT_MAX)
    accessory = block.get("accessory")
    if accessory is not None:
        _element(errors, f"{at}/accessory", accessory)


def _header(errors: BlockErrors, at: str, block: dict[str, Any]) -> None:
    _text_object(
        errors, f"{at}/text", block.get("text"), limit=HEADER_TEXT_MAX, kinds=("plain_text",)
    )


def _divider(errors: BlockErrors, at: str, block: dict[str, Any]) -> None:
    return


def _context(errors: BlockErrors, at: str, block: dict[str, Any]) -> None:
    elements = block.get("elements")
    if not isinstance(elements, list) or not elements:
        errors.add(f"{at}/elements", "must be a non-empty array")
        return
    if len(elements) > CONTEXT_ELEMENTS_MAX:
        errors.add(f"{at}/elements", f"must be less than {CONTEXT_ELEMENTS_MAX + 1} items")
    for j, element in enumerate(elements):
        where = f"{at}/elements/{j}"
        if isinstance(element, dict) and element.get("type") == "image":
            _image(errors, where, element)
        else:
            _text_object(errors, where, element, limit=SECTION_TEXT_MAX)


def _actions(errors: BlockErrors, at: str, block: dict[str, Any]) -> None:
    elements = block.get("elements")
    if not isinstance(elements, list) or not elements:
        errors.add(f"{at}/elements", "must be a non-empty array")
        return
    if len(elements) > ACTIONS_ELEMENTS_MAX:
        errors.add(f"{at}/elements", f"must be less than {ACTIONS_ELEMENTS_MAX + 1} items")
    for j, element in enumerate(elements):
        _element(errors, f"{at}/elements/{j}", element)


def _element(errors: BlockErrors, at: str, element: Any) -> None:
    """An interactive element; the sandbox knows buttons (link buttons included)."""
    if not isinstance(element, dict) or element.get("type") != "button":
        errors.add(at, "unsupported element type")
        return
    for key in element:
        if key not in {"type", "text", "action_id", "url", "value", "style", "accessibility_label"}:
            errors.add(f"{at}/{key}", "unknown field")
    _text_object(
        errors, f"{at}/text", element.get("text"), limit=BUTTON_TEXT_MAX, kinds=("plain_text",)
    )
    url = element.get("url")
    if url is not None and (not isinstance(url, str) or not 0 < len(url) <= BUTTON_URL_MAX):
        errors.add(f"{at}/url", f"must be less than {BUTTON_URL_MAX + 1} characters")
    if element.get("style") not in (None, "primary", "danger"):
        errors.add(f"{at}/style", "must be one of primary, danger")


def _image(errors: BlockErrors, at: str, block: dict[str, Any]) -> None:
    for key in ("image_url", "alt_text"):
        if not isinstance(block.get(key), str) or not block[key]:
            errors.add(f"{at}/{key}", "must be more than 0 characters")


def _markdown(errors: BlockErrors, at: str, block: dict[str, Any]) -> None:
    text = block.get("text")
    if not isinstance(text, str) or not text:
        errors.add(f"{at}/text", "must be more than 0 characters")
    elif len(text) > MARKDOWN_TEXT_MAX:
        errors.add(f"{at}/text", f"must be less than {MARKDOWN_TEXT_MAX + 1} characters")


_BLOCKS = {
    "section": ({"text", "fields", "accessory"}, _section),
    "header": ({"text"}, _header),
    "divider": (set(), _divider),
    "context": ({"elements"}, _context),
    "actions": ({"elements"}, _actions),
    "image": ({"image_url", "alt_text", "title"}, _image),
    "markdown": ({"text"}, _markdown),
}


# --- pings -----------------------------------------------------------------------------
_PING = re.compile(
    r"<!(?P<special>channel|here|everyone)(?:\|[^>]*)?>"
    r"|<@(?P<user>[UW][A-Z0-9]+)(?:\|[^>]*)?>"
    r"|<!subteam\^(?P<subteam>[A-Z0-9]+)(?:\|[^>]*)?>"
)
# With `link_names=1` or `parse=full`, Slack also turns bare names into mentions.
_BARE = re.compile(r"(?<![\w<&])@(?P<special>channel|here|everyone)\b")


def pings_in(text: str, *, bare_names: bool = False) -> list[tuple[str, str]]:
    """(kind, matched text) for every mention in `text`: `channel`, `here`,
    `everyone`, `user:<id>`, `subteam:<id>`. `<!date^…>` and links do not notify."""
    found: list[tuple[int, str, str]] = []
    for m in _PING.finditer(text):
        if m["special"]:
            kind = m["special"]
        elif m["user"]:
            kind = f"user:{m['user']}"
        else:
            kind = f"subteam:{m['subteam']}"
        found.append((m.start(), kind, m.group(0)))
    if bare_names:
        found += [(m.start(), m["special"], m.group(0)) for m in _BARE.finditer(text)]
    return [(kind, match) for _, kind, match in sorted(found)]


def find_pings(text: str, blocks: list[Any], *, bare_names: bool = False) -> list[dict[str, str]]:
    """Every mention in a message's `text` and in any text of its blocks (section text
    and fields, headers, context elements, button labels, markdown blocks), each with
    its JSON pointer (`text`, `/blocks/0/fields/1/text`)."""
    out = [
        {"where": "text", "kind": kind, "match": match}
        for kind, match in pings_in(text, bare_names=bare_names)
    ]
    for pointer, value in _block_texts(blocks, "/blocks"):
        out += [
            {"where": pointer, "kind": kind, "match": match}
            for kind, match in pings_in(value, bare_names=bare_names)
        ]
    return out


def _block_texts(node: Any, at: str) -> list[tuple[str, str]]:
    """Every `text` string anywhere under the blocks, plus rich-text mention elements."""
    out: list[tuple[str, str]] = []
    if isinstance(node, list):
        for i, item in enumerate(node):
            out += _block_texts(item, f"{at}/{i}")
    elif isinstance(node, dict):
        kind = node.get("type")
        # rich_text mention elements notify without any `<…>` syntax
        if kind == "broadcast" and isinstance(node.get("range"), str):
            out.append((at, f"<!{node['range']}>"))
        elif kind == "user" and isinstance(node.get("user_id"), str):
            out.append((at, f"<@{node['user_id']}>"))
        elif kind == "usergroup" and isinstance(node.get("usergroup_id"), str):
            out.append((at, f"<!subteam^{node['usergroup_id']}>"))
        for key, value in node.items():
            if isinstance(value, str) and key == "text":
                out.append((f"{at}/{key}", value))
            elif isinstance(value, dict | list):
                out += _block_texts(value, f"{at}/{key}")
    return out
