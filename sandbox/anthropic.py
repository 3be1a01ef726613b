"""A loopback stand-in for the Anthropic Messages API (`POST /v1/messages`, `count_tokens`).

Authentication: `x-api-key: K` or `Authorization: Bearer K` (the SDK 2.x sends the
latter) for a configured key K; otherwise 401 `authentication_error`. Requests are
checked like the API does (`anthropic-version` header, model, max_tokens, messages,
tool_choice naming an offered tool, at most 4 cache breakpoints; streaming is not
simulated) and refused with 400 `invalid_request_error`. Every error body has
Anthropic's shape `{"type": "error", "error": {"type", "message"}}`.

Every 200 answer is checked with `anthropic.types.Message.model_validate` before it is
sent (the SDK does not validate responses, so a broken stand-in would pass silently);
an invalid one becomes a loud 500 that the SDK does not retry (`x-should-retry: false`).

Answers come from the scripted queue first (`enqueue`, `POST /_control/answers`), then,
in "model" mode (the default), from the sandbox model (`sandbox.model`, a simulation).
In "scripted" mode an empty queue is a non-retried 500 `api_error`. The `model` field
always echoes the request. Token counts, truncation at max_tokens and the answer
helpers are in `sandbox.anthropic_wire` (re-exported here).

Prompt caching: a segment carrying `cache_control` (or the last segment, when the
request has a top-level `cache_control`) is a breakpoint; the cacheable prefix is every
segment (tools, then system, then messages) up to and including it, keyed by model and
content. The longest breakpoint prefix already cached is read
(`cache_read_input_tokens`); when the last breakpoint's prefix is new, the tokens from
the read prefix up to it are written (`cache_creation_input_tokens`, also broken down
by TTL in `cache_creation`); `input_tokens` counts only the rest, so the three add up
to what count_tokens says. The cache lives until `reset()`/`clear_cache()` (no expiry);
prefixes under `min_cacheable_tokens` (default 0) are not cached, like the API below its
minimum cacheable length.

Faults: the base `inject()`, plus helpers with Anthropic's bodies: `rate_limit`
(429, `retry-after` / `retry-after-ms`), `overloaded` (529), `api_error` (500), `error`
(any status and type), `slow` (delayed answer), `disconnect` (connection closed).

`reset()` (also `POST /_control/reset`) forgets requests and faults, empties the queue
and the cache, and restores the constructor's mode (`min_cacheable_tokens` stays). A
request that arrived before a reset (held by `slow`) answers 500 without touching the
new state, so a test's leftovers never consume the next test's answers.

Control API (besides the base's /_control/requests, /reset and /faults):
    POST   /_control/answers   body: an `Answer` or a list of them; queued in order
    GET    /_control/answers   -> the pending answers
    DELETE /_control/answers   clears the queue
    GET    /_control/settings  -> {"mode", "min_cacheable_tokens"}
    POST   /_control/settings  body: any of those fields; -> the new settings
    GET    /_control/cache     -> {"entries": n};  DELETE /_control/cache clears it
    POST   /_control/errors    body: {"kind": "rate_limit"|"overloaded"|"api_error"|"slow"|
                                "disconnect", and that helper's keyword arguments}
"""

from __future__ import annotations

import socket
import threading
import time
import uuid
from collections import deque
from collections.abc import Iterable
from http.server import BaseHTTPRequestHandler
from typing import Any, Literal

from anthropic.types import Message, MessageTokensCount
from pydantic import ValidationError

from sandbox import model as sandbox_model
from sandbox.anthropic_wire import (
    Answer,
    cache_breakpoints,
    error_body,
    estimate_tokens,
    fenced_json_answer,
    json_answer,
    malformed_json_answer,
    prose_json_answer,
    render,
    request_problem,
    text_answer,
    tool_answer,
    trailing_comma_answer,
    truncated,
)
from sandbox.http import Fault, Request, Response, SandboxServer

__all__ = [
    "API_PATHS",
    "COUNT_TOKENS_PATH",
    "MESSAGES_PATH",
    "SANDBOX_API_KEY",
    "Answer",
    "AnthropicServer",
    "error_body",
    "estimate_tokens",
    "fenced_json_answer",
    "json_answer",
    "malformed_json_answer",
    "prose_json_answer",
    "text_answer",
    "tool_answer",
    "trailing_comma_answer",
    "truncated",
]

SANDBOX_API_KEY = "sandbox-anthropic-key-not-secret"
MESSAGES_PATH = "/v1/messages"
COUNT_TOKENS_PATH = "/v1/messages/count_tokens"
API_PATHS = r"/v1/messages(/count_tokens)?"
Mode = Literal["model", "scripted"]


class AnthropicServer(SandboxServer):
    """The Messages API on loopback, with a scripted queue, faults and the sandbox model."""

    name = "anthropic"

    def __init__(
        self,
        api_keys: Iterable[str] = (SANDBOX_API_KEY,),
        *,
        mode: Mode = "model",
        min_cacheable_tokens: int = 0,
    ) -> None:
        self.api_keys = frozenset(api_keys)
        self._default_mode: Mode = mode
        self.mode: Mode = mode
        self.min_cacheable_tokens = min_cacheable_tokens
        self._answers: deque[Answer] = deque()
        self._cache: set[str] = set()
        self._state_lock = threading.Lock()
        self._reset_at = 0.0
        super().__init__()

    def setup_routes(self) -> None:
        self.route("POST", MESSAGES_PATH, self._messages)
        self.route("POST", COUNT_TOKENS_PATH, self._count_tokens)
        self.route("GET", "/_control/answers", self._ctl_answers)
        self.route("POST", "/_control/answers", self._ctl_enqueue)
        self.route("DELETE", "/_control/answers", self._ctl_clear_answers)
        self.route("GET", "/_control/settings", self._ctl_settings)
        self.route("POST", "/_control/settings", self._ctl_settings)
        self.route("GET", "/_control/cache", self._ctl_cache)
        self.route("DELETE", "/_control/cache", self._ctl_cache)
        self.route("POST", "/_control/errors", self._ctl_errors)

    # --- Python control API -------------------------------------------------------
    def enqueue(self, *answers: Answer) -> None:
        """Queue answers; each /v1/messages request that reaches the handler takes one."""
        with self._state_lock:
            self._answers.extend(answers)

    def pending(self) -> list[Answer]:
        with self._state_lock:
            return list(self._answers)

    def clear_answers(self) -> None:
        with self._state_lock:
            self._answers.clear()

    def clear_cache(self) -> None:
        with self._state_lock:
            self._cache.clear()

    def reset(self) -> None:
        """Forget requests, faults, queued answers and the prompt cache; default mode."""
        super().reset()
        with self._state_lock:
            self._reset_at = time.time()
            self._answers.clear()
            self._cache.clear()
            self.mode = self._default_mode

    def message_bodies(self) -> list[dict[str, Any]]:
        """The JSON bodies of every /v1/messages request received, in order."""
        return [r.json() for r in self.received("POST", MESSAGES_PATH)]

    def error(
        self,
        status: int,
        error_type: str,
        message: str,
        *,
        times: int = 1,
        headers: dict[str, str] | None = None,
        path: str = API_PATHS,
    ) -> Fault:
        """Answer the next `times` API requests with this Anthropic error."""
        return self.inject(
            path=path,
            status=status,
            body=error_body(error_type, message),
            headers=headers or {},
            times=times,
        )

    def rate_limit(
        self,
        *,
        times: int = 1,
        retry_after: float | None = None,
        retry_after_ms: int | None = None,
        path: str = API_PATHS,
    ) -> Fault:
        """429 `rate_limit_error`, with `retry-after` (seconds) / `retry-after-ms` if given."""
        headers = {}
        if retry_after is not None:
            headers["retry-after"] = f"{retry_after:g}"
        if retry_after_ms is not None:
            headers["retry-after-ms"] = str(retry_after_ms)
        return self.error(
            429,
            "rate_limit_error",
            "This request would exceed the rate limit for your organization (sandbox).",
            times=times,
            headers=headers,
            path=path,
        )

    def overloaded(
        self, *, times: int = 1, retry_after_ms: int | None = None, path: str = API_PATHS
    ) -> Fault:
        """529 `overloaded_error` (`retry_after_ms` only to make retries fast in tests)."""
        headers = {} if retry_after_ms is None else {"retry-after-ms": str(retry_after_ms)}
        return self.error(
            529, "overloaded_error", "Overloaded", times=times, headers=headers, path=path
        )

    def api_error(
        self, *, times: int = 1, retry_after_ms: int | None = None, path: str = API_PATHS
    ) -> Fault:
        """500 `api_error`."""
        headers = {} if retry_after_ms is None else {"retry-after-ms": str(retry_after_ms)}
        return self.error(
            500, "api_error", "Internal server error", times=times, headers=headers, path=path
        )

    def slow(self, delay: float, *, times: int = 1, path: str = API_PATHS) -> Fault:
        """Answer normally, but only after `delay` seconds."""
        return self.inject(path=path, mode="delay", delay=delay, times=times)

    def disconnect(self, *, times: int = 1, path: str = API_PATHS) -> Fault:
        """Close the connection without an answer (the request was received)."""
        return self.inject(path=path, mode="drop", times=times)

    # --- the API --------------------------------------------------------------------
    def _messages(self, req: Request) -> Response:
        body, problem = self._admit(req, need_max_tokens=True)
        if problem is not None:
            return problem
        with self._state_lock:
            if req.at < self._reset_at:
                # Held by a `slow` fault across a reset: it must not take the next
                # test's answers or fill its cache.
                return _fail(500, "api_error", "sandbox was reset during this request")
            answer = self._answers.popleft() if self._answers else None
            mode = self.mode
        if answer is None and mode == "scripted":
            return self._api_error("sandbox (scripted mode): no answer queued")
        if answer is None:
            try:
                answer = Answer(content=sandbox_model.respond(body))
            except Exception as exc:  # noqa: BLE001 - a sandbox bug must fail at once, unretried
                return self._api_error(f"sandbox model failed: {type(exc).__name__}: {exc}")
        content, stop_reason, output_tokens = render(answer, body["max_tokens"])
        message = {
            "id": f"msg_01{uuid.uuid4().hex[:22]}",
            "type": "message",
            "role": "assistant",
            "model": body["model"],
            "content": content,
            "stop_reason": stop_reason,
            "stop_sequence": None,
            "usage": {**self._usage(body), "output_tokens": output_tokens},
        }
        try:
            Message.model_validate(message)
        except ValidationError as exc:
            return self._api_error(f"sandbox produced an invalid Message: {exc}")
        return Response(200, message, headers={"request-id": _request_id()})

    def _count_tokens(self, req: Request) -> Response:
        body, problem = self._admit(req, need_max_tokens=False)
        if problem is not None:
            return problem
        answer = {"input_tokens": cache_breakpoints(body)[0]}
        MessageTokensCount.model_validate(answer)
        return Response(200, answer, headers={"request-id": _request_id()})

    def _admit(self, req: Request, *, need_max_tokens: bool) -> tuple[Any, Response | None]:
        """Authenticate and validate a request; the body, or the error to answer."""
        auth = req.headers.get("authorization", "")
        key = req.headers.get("x-api-key") or (auth[7:] if auth[:7].lower() == "bearer " else "")
        if not key:
            return None, _fail(401, "authentication_error", "x-api-key header is required")
        if key not in self.api_keys:
            return None, _fail(401, "authentication_error", "invalid x-api-key")
        if not req.headers.get("anthropic-version"):
            return None, _fail(
                400, "invalid_request_error", "anthropic-version: header is required"
            )
        try:
            body = req.json()
        except ValueError:
            return None, _fail(400, "invalid_request_error", "There was an error parsing the body")
        problem = request_problem(body, need_max_tokens)
        return body, None if problem is None else _fail(400, "invalid_request_error", problem)

    def _usage(self, body: dict[str, Any]) -> dict[str, Any]:
        """Input-side usage for a request; records its cacheable prefixes as cached."""
        total, points = cache_breakpoints(body, self.min_cacheable_tokens)
        created, ttl = 0, "5m"
        with self._state_lock:
            read = max((p.tokens for p in points if p.key in self._cache), default=0)
            if points and points[-1].key not in self._cache:
                created, ttl = points[-1].tokens - read, points[-1].ttl
            self._cache.update(p.key for p in points)
        return {
            "input_tokens": total - read - created,
            "cache_creation_input_tokens": created,
            "cache_read_input_tokens": read,
            "cache_creation": {
                "ephemeral_5m_input_tokens": created if ttl != "1h" else 0,
                "ephemeral_1h_input_tokens": created if ttl == "1h" else 0,
            },
        }

    @staticmethod
    def _write(h: BaseHTTPRequestHandler, resp: Response) -> None:
        # The base writes headers and body in two sends; with Nagle on, a keep-alive
        # client then waits for the delayed ACK, ~40 ms per request. TCP_NODELAY avoids it.
        try:
            h.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            SandboxServer._write(h, resp)
        except (BrokenPipeError, ConnectionResetError):
            # The client gave up (its timeout ran out during a `slow` fault): not an error.
            h.close_connection = True

    def _api_error(self, message: str) -> Response:
        # Not retried: a sandbox mistake should fail the test at once, not after backoff.
        return _fail(500, "api_error", message, headers={"x-should-retry": "false"})

    def not_found(self, req: Request, status: int = 404) -> Response:
        if status == 405:
            return _fail(405, "invalid_request_error", f"Method {req.method} not allowed")
        return _fail(404, "not_found_error", f"Not found: {req.path}")

    # --- control routes ---------------------------------------------------------------
    def _ctl_answers(self, req: Request) -> Response:
        return Response(body=[a.model_dump() for a in self.pending()])

    def _ctl_enqueue(self, req: Request) -> Response:
        payload = req.json()
        items = payload if isinstance(payload, list) else [payload]
        try:
            answers = [Answer.model_validate(item) for item in items]
        except ValidationError as exc:
            return Response(422, {"detail": str(exc)})
        self.enqueue(*answers)
        return Response(204)

    def _ctl_clear_answers(self, req: Request) -> Response:
        self.clear_answers()
        return Response(204)

    def _ctl_settings(self, req: Request) -> Response:
        if req.method == "POST":
            update = req.json() or {}
            if update.get("mode", self.mode) not in ("model", "scripted"):
                return Response(422, {"detail": "mode must be 'model' or 'scripted'"})
            self.mode = update.get("mode", self.mode)
            self.min_cacheable_tokens = int(
                update.get("min_cacheable_tokens", self.min_cacheable_tokens)
            )
        return Response(body={"mode": self.mode, "min_cacheable_tokens": self.min_cacheable_tokens})

    def _ctl_cache(self, req: Request) -> Response:
        if req.method == "DELETE":
            self.clear_cache()
            return Response(204)
        with self._state_lock:
            return Response(body={"entries": len(self._cache)})

    def _ctl_errors(self, req: Request) -> Response:
        spec = dict(req.json() or {})
        kind = spec.pop("kind", None)
        helpers = {
            "rate_limit": self.rate_limit,
            "overloaded": self.overloaded,
            "api_error": self.api_error,
            "slow": self.slow,
            "disconnect": self.disconnect,
        }
        if kind not in helpers:
            return Response(422, {"detail": f"kind must be one of {sorted(helpers)}"})
        try:
            fault = helpers[kind](**spec)
        except TypeError as exc:
            return Response(422, {"detail": str(exc)})
        return Response(201, fault.model_dump())


def _fail(
    status: int, error_type: str, message: str, headers: dict[str, str] | None = None
) -> Response:
    return Response(
        status,
        error_body(error_type, message),
        headers={"request-id": _request_id(), **(headers or {})},
    )


def _request_id() -> str:
    return f"req_01{uuid.uuid4().hex[:22]}"
