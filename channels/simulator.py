"""Adapter for the provider simulator: a real HTTP provider for all four channels."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, ClassVar

import httpx

from channels.base import Message, Outcome, SendResult
from channels.signing import SIGNATURE_HEADER, sign


class SimulatorAdapter:
    """Sends through the simulator's ``POST /v1/send``; dedup by our reference makes resends safe."""

    channels: ClassVar[frozenset[str]] = frozenset({"sms", "mms", "push", "email"})
    max_batch: ClassVar[int] = 100
    title_maxlen: ClassVar[int] = 256

    def __init__(
        self,
        base_url: str,
        secret: str,
        *,
        timeout: float = 5.0,
        name: str = "simulator",
        transport: httpx.AsyncBaseTransport | None = None,
        pool_size: int = 32,
    ) -> None:
        self.name = name
        self.base_url = base_url.rstrip("/")
        self.secret = secret
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout, connect=min(timeout, 2.0)),
            limits=httpx.Limits(max_connections=pool_size, max_keepalive_connections=pool_size),
            transport=transport,
        )

    def __repr__(self) -> str:
        return f"SimulatorAdapter({self.base_url!r}, secret=***)"

    async def send(self, message: Message) -> SendResult:
        """POST one message; map the answer to SENT / RETRY / REJECTED."""
        resp = await self._post("/v1/send", _payload(message))
        if isinstance(resp, SendResult):
            return resp
        return self._result(resp.status_code, _json_or_none(resp), resp.headers.get("retry-after"))

    async def send_batch(self, messages: Sequence[Message]) -> list[SendResult]:
        """POST up to ``max_batch`` messages in one call; one result per message."""
        resp = await self._post("/v1/send/batch", {"messages": [_payload(m) for m in messages]})
        if isinstance(resp, SendResult):
            return [resp] * len(messages)
        data = _json_or_none(resp)
        items = data.get("results") if resp.status_code == 200 and isinstance(data, dict) else None
        if not isinstance(items, list) or len(items) != len(messages):
            whole = self._result(
                resp.status_code if resp.status_code != 200 else 502, data, resp.headers.get("retry-after")
            )
            return [whole] * len(messages)
        return [self._result(int(i.get("status", 502)), i, None) for i in items]

    async def _post(self, path: str, payload: dict[str, Any]) -> httpx.Response | SendResult:
        body = json.dumps(payload, ensure_ascii=False).encode()
        headers = {"content-type": "application/json", SIGNATURE_HEADER: sign(self.secret, body)}
        try:
            return await self._client.post(f"{self.base_url}{path}", content=body, headers=headers)
        except httpx.TimeoutException:
            return SendResult(
                Outcome.RETRY, self.name, code="timeout", detail="provider did not answer in time"
            )
        except httpx.HTTPError as exc:
            return SendResult(Outcome.RETRY, self.name, code="transport_error", detail=type(exc).__name__)

    def _result(self, status: int, data: Any, retry_after: str | None) -> SendResult:
        if status == 200 and isinstance(data, dict) and data.get("provider_message_id"):
            return SendResult(Outcome.SENT, self.name, provider_message_id=str(data["provider_message_id"]))
        code = str(data["code"]) if isinstance(data, dict) and data.get("code") else None
        detail = str(data.get("message") or "") or None if isinstance(data, dict) else None
        if status == 429 or status >= 500 or status == 200:
            return SendResult(
                Outcome.RETRY,
                self.name,
                code=code or f"http_{status}",
                detail=detail,
                retry_after=float(retry_after) if retry_after and retry_after.isdigit() else None,
            )
        return SendResult(Outcome.REJECTED, self.name, code=code or f"http_{status}", detail=detail)

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._client.aclose()


def _payload(message: Message) -> dict[str, Any]:
    return {
        "channel": message.channel,
        "to": message.to,
        "text": message.text,
        "subject": message.subject,
        "html": message.html,
        "title": message.title,
        "media": list(message.media),
        "brand": message.brand,
        "reference": message.reference,
    }


def _json_or_none(resp: httpx.Response) -> Any:
    try:
        return resp.json()
    except ValueError:
        return {"message": resp.text[:200]} if resp.text else None
