"""The shared base of the HTTP clients: one `httpx.AsyncClient`, explicit timeouts,
and every transport or status failure translated into the client's typed error."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Self

import httpx

from clients.errors import UpstreamError


class HttpClient:
    """Base class; subclasses set `error` and call `_send` for every request."""

    error: type[UpstreamError] = UpstreamError

    def __init__(
        self,
        base_url: str,
        *,
        headers: Mapping[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        verify: bool = True,
        timeout: float = 10.0,
        secrets: Iterable[str] = (),
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self._secrets = tuple(s for s in secrets if s)
        self._http = httpx.AsyncClient(
            base_url=self.base_url,
            headers=dict(headers or {}),
            auth=httpx.BasicAuth(*auth) if auth else None,
            verify=verify,
            timeout=httpx.Timeout(timeout),
        )

    async def _send(
        self,
        method: str,
        path: str,
        operation: str,
        *,
        ok: Iterable[int] = (200, 201, 202, 204),
        **kwargs: Any,
    ) -> httpx.Response:
        """Send one request; raise `self.error` on transport failure or an unexpected status."""
        try:
            resp = await self._http.request(method, path, **kwargs)
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            raise self._fail(
                operation, f"cannot connect to {self.base_url}: {exc}", request_sent=False
            ) from exc
        except httpx.TimeoutException as exc:
            raise self._fail(operation, f"no answer within {self.timeout:g} s") from exc
        except httpx.HTTPError as exc:
            raise self._fail(operation, f"{type(exc).__name__}: {exc}") from exc
        if resp.status_code not in set(ok):
            raise self._fail(operation, self.error_detail(resp), status_code=resp.status_code)
        return resp

    def _fail(
        self,
        operation: str,
        detail: str,
        *,
        status_code: int | None = None,
        request_sent: bool = True,
    ) -> UpstreamError:
        return self.error(
            operation,
            detail,
            status_code=status_code,
            secrets=self._secrets,
            request_sent=request_sent,
        )

    def error_detail(self, resp: httpx.Response) -> str:
        """The product's own error text from a failed response (override per product)."""
        return resp.text[:1000] or resp.reason_phrase

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
