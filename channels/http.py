"""What every HTTP provider adapter shares: a pooled client and transport trouble turned into RETRY."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx

from channels.base import Outcome, SendResult


class HttpAdapter:
    """Base of the HTTP adapters: one pooled client per adapter, no exceptions out of a send."""

    name: str

    def __init__(
        self,
        name: str,
        *,
        timeout: float = 5.0,
        pool_size: int = 32,
        transport: httpx.AsyncBaseTransport | None = None,
        http2: bool = False,
    ) -> None:
        self.name = name
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout, connect=min(timeout, 2.0)),
            limits=httpx.Limits(max_connections=pool_size, max_keepalive_connections=pool_size),
            transport=transport,
            http2=http2,
        )

    async def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response | SendResult:
        """The provider's answer, or a RETRY result when it could not be reached in time."""
        try:
            return await self._client.request(method, url, **kwargs)
        except httpx.TimeoutException:
            return self.retry("timeout", "provider did not answer in time")
        except httpx.HTTPError as exc:
            return self.retry("transport_error", type(exc).__name__)

    def retry(self, code: str, detail: str | None = None, retry_after: float | None = None) -> SendResult:
        """A transient failure."""
        return SendResult(Outcome.RETRY, self.name, code=code, detail=detail, retry_after=retry_after)

    def rejected(self, code: str, detail: str | None = None) -> SendResult:
        """A permanent failure."""
        return SendResult(Outcome.REJECTED, self.name, code=code, detail=detail)

    def sent(self, provider_message_id: str) -> SendResult:
        """Accepted by the provider."""
        return SendResult(Outcome.SENT, self.name, provider_message_id=provider_message_id)

    def by_status(self, resp: httpx.Response, code: str | None, detail: str | None) -> SendResult:
        """A failed HTTP answer (see ``classify``)."""
        return self.classify(resp.status_code, code, detail, retry_after_seconds(resp))

    def classify(
        self, status: int, code: str | None, detail: str | None, retry_after: float | None = None
    ) -> SendResult:
        """A failed status: 408, 409, 425, 429 and 5xx are transient, other 4xx permanent."""
        if status in (408, 409, 425, 429) or status >= 500:
            return self.retry(code or f"http_{status}", detail, retry_after)
        return self.rejected(code or f"http_{status}", detail)

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._client.aclose()


def retry_after_seconds(resp: httpx.Response) -> float | None:
    """``Retry-After`` in seconds, when given as a number."""
    value = resp.headers.get("retry-after", "")
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None


def json_or_none(resp: httpx.Response) -> Any:
    """The JSON body, or None."""
    try:
        return resp.json()
    except ValueError:
        return None


class TokenCache:
    """One access token shared by every send of an adapter (FCM's OAuth token, WeChat's access_token):
    fetched once however many sends wait for it, renewed a minute before it expires (so it cannot
    expire between our check and the provider's), dropped when the provider refuses it."""

    def __init__(self) -> None:
        self._token: str | None = None
        self._expires = 0.0
        self._lock = asyncio.Lock()
        self.fetches = 0  # how many tokens were fetched (metrics, tests)

    async def get(self, fetch: Callable[[], Awaitable[tuple[str, float] | SendResult]]) -> str | SendResult:
        """The cached token, or ``fetch``'s (token, seconds it lives), or what the fetch failed with."""
        async with self._lock:
            if self._token is not None and time.time() < self._expires:
                return self._token
            got = await fetch()
            if isinstance(got, SendResult):
                return got
            self.fetches += 1
            self._token, self._expires = got[0], time.time() + got[1] - 60
            return self._token

    async def drop(self, token: str) -> None:
        """Forget a token the provider refused (unless another send already replaced it)."""
        async with self._lock:
            if self._token == token:
                self._token = None
