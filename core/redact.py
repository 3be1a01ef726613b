"""Secret redaction for any text that leaves the process (logs, prompts, Discord, ledger).

Patterns (documented in the README's security section):
- `Authorization: <scheme> <credentials>` headers and `Bearer`/`Bot`/`Basic` tokens;
- `password=…`, `passwd: …`, `secret=…`, `token=…`, `api_key=…`, `apikey …` assignments;
- URLs with credentials (`scheme://user:password@host`) and DSN passwords;
- well-known token shapes: Anthropic (`sk-ant-…`), generic `sk-…`, GitHub (`ghp_…`),
  AWS access key ids (`AKIA…`), Slack (`xox…-`), JWTs, PEM private key blocks;
- any exact value passed in `secrets` (e.g. the block secrets of this run).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

MASK = "[REDACTED]"

_PATTERNS: list[tuple[re.Pattern[str], str]] = [
    (
        re.compile(
            r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?(-----END [A-Z ]*PRIVATE KEY-----|$)",
            re.S,
        ),
        MASK,
    ),
    (
        re.compile(r"(?i)\b(authorization\s*[:=]\s*)(\"?)[^\s\"',;]+(\s+[^\s\"',;]+)?"),
        rf"\1\2{MASK}",
    ),
    (re.compile(r"(?i)\b(bearer|bot|basic|token)\s+[A-Za-z0-9._~+/=-]{8,}"), rf"\1 {MASK}"),
    (
        re.compile(
            r"(?i)\b((?:[a-z0-9_]*_)?(?:password|passwd|pwd|secret|token|api[_-]?key|apikey|"
            r"access[_-]?key|private[_-]?key|client[_-]?secret))(\"?\s*[:=]\s*\"?)"
            r"(?!\[REDACTED\])[^\s\"',;&]+"
        ),
        rf"\1\2{MASK}",
    ),
    (re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^\s:/@]+:)[^\s@/]+@"), rf"\1{MASK}@"),
    (re.compile(r"\bsk-ant-[A-Za-z0-9_-]{8,}"), MASK),
    (re.compile(r"\bsk-[A-Za-z0-9]{16,}"), MASK),
    (re.compile(r"\bgh[pousr]_[A-Za-z0-9]{20,}"), MASK),
    (re.compile(r"\bAKIA[0-9A-Z]{16}\b"), MASK),
    (re.compile(r"\bxox[abprs]-[A-Za-z0-9-]{10,}"), MASK),
    (re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}"), MASK),
]


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """Return `text` with secrets masked: exact known values first, then patterns."""
    for secret in sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True):
        text = text.replace(secret, MASK)
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text
