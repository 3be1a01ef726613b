"""The LogQL subset the sandbox Loki understands, with Loki's own error texts.

Supported: a stream selector `{name OP "value", ...}` with `=`, `!=`, `=~`, `!~`
(regexes fully anchored against the label value, as Loki does), followed by any
number of line filters `|= "x"`, `!= "x"`, `|~ "re"`, `!~ "re"` (regexes unanchored).
Strings are Go-quoted (`"..."` with escapes) or raw (`` `...` ``).

Anything else raises `LogQLError` whose message is what Loki puts in its 400 body:
`parse error at line 1, col N: syntax error: ...` for malformed text, the
empty-compatible-matcher message for selectors like `{host=~".*"}`, and
`unsupported (fake Loki): ...` for valid LogQL beyond the subset (parsers, metric
queries), so an unsupported query fails loudly instead of returning nothing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

EMPTY_MATCHER_ERROR = (
    "queries require at least one regexp or equality matcher that does not have an "
    'empty-compatible value. For instance, app=~".*" does not meet this requirement, '
    'but app=~".+" will'
)

# Functions and keywords of full LogQL: seeing one means "valid but beyond the subset".
_LOGQL_FUNCTIONS = {
    "count_over_time", "rate", "bytes_over_time", "bytes_rate", "sum", "avg", "min",
    "max", "count", "topk", "bottomk", "sort", "sort_desc", "absent_over_time",
    "sum_over_time", "avg_over_time", "max_over_time", "min_over_time", "quantile_over_time",
    "first_over_time", "last_over_time", "stddev_over_time", "stdvar_over_time",
    "rate_counter", "label_replace", "vector", "stddev", "stdvar",
}  # fmt: skip

_TOKEN = re.compile(
    r"""\s*(?:
      (?P<string>"(?:[^"\\]|\\.)*"|`[^`]*`)
    | (?P<op>\|=|\|~|!=|!~|=~|=|\|)
    | (?P<punct>[{},()\[\]])
    | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
    | (?P<other>\S)
    )""",
    re.X,
)
_ESCAPES = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v"}
_ESCAPES |= {"\\": "\\", '"': '"', "'": "'"}
_HEX_ESCAPES = {"x": 2, "u": 4, "U": 8}


class LogQLError(ValueError):
    """The query is not accepted; `str(exc)` is the text Loki answers with HTTP 400."""


@dataclass(frozen=True)
class Matcher:
    name: str
    op: str  # one of = != =~ !~
    value: str

    def matches(self, labels: dict[str, str]) -> bool:
        # A missing label has the empty value, exactly as in Loki and Prometheus.
        actual = labels.get(self.name, "")
        if self.op == "=":
            return actual == self.value
        if self.op == "!=":
            return actual != self.value
        hit = re.fullmatch(self.value, actual) is not None
        return hit if self.op == "=~" else not hit


@dataclass(frozen=True)
class LineFilter:
    op: str  # one of |= != |~ !~
    value: str

    def matches(self, line: str) -> bool:
        if self.op == "|=":
            return self.value in line
        if self.op == "!=":
            return self.value not in line
        hit = re.search(self.value, line) is not None
        return hit if self.op == "|~" else not hit


@dataclass(frozen=True)
class LogQuery:
    """A parsed log query: every matcher must hold for the stream, every filter for the line."""

    matchers: tuple[Matcher, ...]
    filters: tuple[LineFilter, ...]

    def matches_stream(self, labels: dict[str, str]) -> bool:
        return all(m.matches(labels) for m in self.matchers)

    def matches_line(self, line: str) -> bool:
        return all(f.matches(line) for f in self.filters)


@dataclass(frozen=True)
class _Tok:
    kind: str
    text: str
    col: int  # 1-based, as in Loki's messages


def _tokens(query: str) -> list[_Tok]:
    toks: list[_Tok] = []
    pos = 0
    while pos < len(query):
        m = _TOKEN.match(query, pos)
        if m is None:  # only trailing whitespace is left
            break
        kind = m.lastgroup or "other"
        toks.append(_Tok(kind, m.group(kind), m.start(kind) + 1))
        pos = m.end()
    toks.append(_Tok("end", "$end", len(query) + 1))
    return toks


def _syntax(tok: _Tok, expecting: str = "") -> LogQLError:
    shown = {"ident": "IDENTIFIER", "string": "STRING"}.get(tok.kind, tok.text)
    tail = f", expecting {expecting}" if expecting else ""
    return LogQLError(
        f"parse error at line 1, col {tok.col}: syntax error: unexpected {shown}{tail}"
    )


def _unquote(tok: _Tok) -> str:
    """Go's strconv.Unquote for the two quote styles LogQL accepts."""
    body = tok.text[1:-1]
    if tok.text.startswith("`"):
        return body
    out: list[str] = []
    i = 0
    while i < len(body):
        ch = body[i]
        if ch != "\\":
            out.append(ch)
            i += 1
            continue
        nxt = body[i + 1]
        if nxt in _ESCAPES:
            out.append(_ESCAPES[nxt])
            i += 2
        elif nxt in _HEX_ESCAPES:
            hexlen = _HEX_ESCAPES[nxt]
            digits = body[i + 2 : i + 2 + hexlen]
            if not re.fullmatch(f"[0-9a-fA-F]{{{hexlen}}}", digits):
                raise LogQLError(f"parse error at line 1, col {tok.col}: invalid syntax")
            out.append(chr(int(digits, 16)))
            i += 2 + hexlen
        else:
            # Go rejects unknown escapes such as "\." (write "\\." instead); so does Loki.
            raise LogQLError(f"parse error at line 1, col {tok.col}: invalid char escape")
    return "".join(out)


def _regex(value: str, tok: _Tok) -> str:
    try:
        re.compile(value)
    except re.error as exc:
        raise LogQLError(
            f"parse error at line 1, col {tok.col}: error parsing regexp: {exc}: `{value}`"
        ) from exc
    return value


def parse(query: str) -> LogQuery:
    """Parse `query` or raise `LogQLError` with Loki's message."""
    toks = _tokens(query)

    def at(k: int) -> _Tok:  # past the end, keep answering with the $end token
        return toks[min(k, len(toks) - 1)]

    first = toks[0]
    if first.kind == "ident" and first.text in _LOGQL_FUNCTIONS:
        raise LogQLError(f"unsupported (fake Loki): metric queries such as {first.text}(...)")
    if first.text != "{":
        raise _syntax(first)
    i = 1
    matchers: list[Matcher] = []
    while True:
        name, op, value = at(i), at(i + 1), at(i + 2)
        if name.kind != "ident":
            raise _syntax(name, "IDENTIFIER")
        if op.text not in ("=", "!=", "=~", "!~"):
            raise _syntax(op, "= or =~ or !~ or !=")
        if value.kind != "string":
            raise _syntax(value, "STRING")
        text = _unquote(value)
        text = _regex(text, value) if "~" in op.text else text
        matchers.append(Matcher(name.text, op.text, text))
        sep = at(i + 3)
        i += 4
        if sep.text == "}":
            break
        if sep.text != ",":
            raise _syntax(sep, ", or }")
    if not any(m.op in ("=", "=~") and not m.matches({}) for m in matchers):
        raise LogQLError(EMPTY_MATCHER_ERROR)
    filters: list[LineFilter] = []
    while toks[i].kind != "end":
        op = toks[i]
        if op.text == "|" or (op.kind == "ident" and op.text == "or"):
            raise LogQLError(f"unsupported (fake Loki): pipeline stage at col {op.col}")
        if op.text not in ("|=", "!=", "|~", "!~"):
            raise _syntax(op)
        value = at(i + 1)
        if value.kind != "string":
            raise _syntax(value, "STRING")
        text = _unquote(value)
        text = _regex(text, value) if "~" in op.text else text
        filters.append(LineFilter(op.text, text))
        i += 2
    return LogQuery(tuple(matchers), tuple(filters))
