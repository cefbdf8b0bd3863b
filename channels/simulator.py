"""Adapter for the provider simulator: a real HTTP provider for all four channels."""

from __future__ import annotations

import json
from typing import ClassVar

import httpx

from channels.base import Message, Outcome, SendResult
from channels.signing import SIGNATURE_HEADER, sign


class SimulatorAdapter:
    """Sends through the simulator's ``POST /v1/send``; dedup by our reference makes resends safe."""

    channels: ClassVar[frozenset[str]] = frozenset({"sms", "mms", "push", "email"})
    title_maxlen: ClassVar[int] = 256

    def __init__(
        self,
        base_url: str,
        secret: str,
        *,
        timeout: float = 5.0,
        name: str = "simulator",
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.name = name
        self.base_url = base_url.rstrip("/")
        self.secret = secret
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout, connect=min(timeout, 2.0)),
            limits=httpx.Limits(max_connections=256, max_keepalive_connections=256),
            transport=transport,
        )

    def __repr__(self) -> str:
        return f"SimulatorAdapter({self.base_url!r}, secret=***)"

    async def send(self, message: Message) -> SendResult:
        """POST the message; map the answer to SENT / RETRY / REJECTED."""
        body = json.dumps(
            {
                "channel": message.channel,
                "to": message.to,
                "text": message.text,
                "subject": message.subject,
                "html": message.html,
                "title": message.title,
                "media": list(message.media),
                "brand": message.brand,
                "reference": message.reference,
            },
            ensure_ascii=False,
        ).encode()
        headers = {"content-type": "application/json", SIGNATURE_HEADER: sign(self.secret, body)}
        try:
            resp = await self._client.post(f"{self.base_url}/v1/send", content=body, headers=headers)
        except httpx.TimeoutException:
            return SendResult(
                Outcome.RETRY, self.name, code="timeout", detail="provider did not answer in time"
            )
        except httpx.HTTPError as exc:
            return SendResult(Outcome.RETRY, self.name, code="transport_error", detail=type(exc).__name__)
        if resp.status_code == 200:
            data = resp.json()
            return SendResult(Outcome.SENT, self.name, provider_message_id=str(data["provider_message_id"]))
        code, detail = _error(resp)
        if resp.status_code == 429 or resp.status_code >= 500:
            retry_after = resp.headers.get("retry-after")
            return SendResult(
                Outcome.RETRY,
                self.name,
                code=code or f"http_{resp.status_code}",
                detail=detail,
                retry_after=float(retry_after) if retry_after and retry_after.isdigit() else None,
            )
        return SendResult(Outcome.REJECTED, self.name, code=code or f"http_{resp.status_code}", detail=detail)

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._client.aclose()


def _error(resp: httpx.Response) -> tuple[str | None, str | None]:
    try:
        data = resp.json()
    except ValueError:
        return None, resp.text[:200] or None
    if isinstance(data, dict):
        return (str(data["code"]) if "code" in data else None), (str(data.get("message") or "") or None)
    return None, None
