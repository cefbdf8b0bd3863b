"""Adapter for the provider simulator: a real HTTP provider for every channel (voice calls and WeChat included).

Its callbacks (receipt batches, member replies) are JSON signed like its sends: the hex
HMAC-SHA256 of the body with the shared secret, in ``x-tidings-signature``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, overload

import httpx
import msgspec

from channels.base import (
    Ack,
    Callback,
    CallbackAuth,
    ForgedCallback,
    InboundReply,
    Message,
    Receipt,
    SendResult,
    decode_json,
)
from channels.http import HttpAdapter, json_or_none, retry_after_seconds
from channels.signing import SIGNATURE_HEADER, sign, verify
from channels.simstate import CHANNELS
from channels.urls import ProviderURL

_encode = msgspec.json.encode


class SimReceipt(msgspec.Struct):
    """One receipt as the simulator posts it."""

    reference: str
    provider_message_id: str
    status: str
    channel: str = ""
    code: str | None = None
    at: str | None = None


class SimReceipts(msgspec.Struct):
    """The simulator's receipt batch."""

    receipts: list[SimReceipt]


class SimReply(msgspec.Struct):
    """A member's reply as the simulator pushes it."""

    text: str
    sender: str = msgspec.field(name="from")
    to: str = ""
    brand: str | None = None
    reference: str | None = None
    received_at: str | None = None


class SimulatorAdapter(HttpAdapter):
    """Sends through the simulator's ``POST /v1/send``; dedup by our reference makes resends safe."""

    channels: ClassVar[frozenset[str]] = frozenset(CHANNELS)
    max_batch: ClassVar[int] = 100
    title_maxlen: ClassVar[int] = 256
    callback_auth: ClassVar[CallbackAuth] = CallbackAuth.SIGNED

    @overload
    def __init__(
        self,
        base_url: ProviderURL,
        *,
        timeout: float = 5.0,
        name: str = "simulator",
        transport: httpx.AsyncBaseTransport | None = None,
        pool_size: int = 32,
    ) -> None: ...

    @overload
    def __init__(
        self,
        base_url: str,
        secret: str,
        *,
        timeout: float = 5.0,
        name: str = "simulator",
        transport: httpx.AsyncBaseTransport | None = None,
        pool_size: int = 32,
    ) -> None: ...

    def __init__(
        self,
        base_url: str | ProviderURL,
        secret: str = "",
        *,
        timeout: float = 5.0,
        name: str = "simulator",
        transport: httpx.AsyncBaseTransport | None = None,
        pool_size: int = 32,
    ) -> None:
        """From its base URL and secret, or from its provider URL ``simulator+http://:SECRET@host:port``
        (how the registry builds every adapter)."""
        super().__init__(name, timeout=timeout, pool_size=pool_size, transport=transport)
        if isinstance(base_url, ProviderURL):
            secret = base_url.secret
            base_url = base_url.base
        self.base_url = base_url.rstrip("/")
        self.secret = secret

    def __repr__(self) -> str:
        return f"SimulatorAdapter({self.base_url!r}, secret=***)"

    async def send(self, message: Message) -> SendResult:
        """POST one message; map the answer to SENT / RETRY / REJECTED."""
        resp = await self._post("/v1/send", _payload(message))
        if isinstance(resp, SendResult):
            return resp
        return self._result(resp.status_code, json_or_none(resp), retry_after_seconds(resp))

    async def send_batch(self, messages: Sequence[Message]) -> list[SendResult]:
        """POST up to ``max_batch`` messages in one call; one result per message."""
        resp = await self._post("/v1/send/batch", {"messages": [_payload(m) for m in messages]})
        if isinstance(resp, SendResult):
            return [resp] * len(messages)
        data = json_or_none(resp)
        items = data.get("results") if resp.status_code == 200 and isinstance(data, dict) else None
        if not isinstance(items, list) or len(items) != len(messages):
            status = resp.status_code if resp.status_code != 200 else 502
            return [self._result(status, data, retry_after_seconds(resp))] * len(messages)
        return [self._result(int(i.get("status", 502)), i, None) for i in items]

    async def _post(self, path: str, payload: dict[str, Any]) -> httpx.Response | SendResult:
        body = _encode(payload)  # msgspec: a batch of a hundred texts is encoded 5x faster than by json
        headers = {"content-type": "application/json", SIGNATURE_HEADER: sign(self.secret, body)}
        return await self.request("POST", f"{self.base_url}{path}", content=body, headers=headers)

    def _result(self, status: int, data: Any, retry_after: float | None) -> SendResult:
        if status == 200 and isinstance(data, dict) and data.get("provider_message_id"):
            return self.sent(str(data["provider_message_id"]))
        code = str(data["code"]) if isinstance(data, dict) and data.get("code") else None
        detail = str(data.get("message") or "") or None if isinstance(data, dict) else None
        if status == 200:  # a 200 without a message id: the provider did not say it took it
            return self.retry(code or "http_200", detail, retry_after)
        return self.classify(status, code, detail, retry_after)

    # -- callbacks -------------------------------------------------------------------------------
    @classmethod
    def verify_callback(cls, callback: Callback, secret: str) -> None:
        """The body's HMAC with the shared secret."""
        if not verify(secret, callback.body, callback.headers.get(SIGNATURE_HEADER)):
            raise ForgedCallback("bad_signature", "the request signature does not verify")

    @classmethod
    def parse_receipts(cls, callback: Callback) -> list[Receipt]:
        """A batch ``{"receipts": [...]}``; each names our reference."""
        batch = decode_json(callback.body, SimReceipts, "malformed_receipt")
        return [
            Receipt(
                r.provider_message_id, r.status == "delivered", r.code, r.reference, r.at, r.channel or "sms"
            )
            for r in batch.receipts
        ]

    @classmethod
    def parse_replies(cls, callback: Callback) -> list[InboundReply]:
        """One reply per call; the simulator ties it to the last message it delivered to that number
        (a sub-port), whose reference names the tenant."""
        reply = decode_json(callback.body, SimReply, "malformed_reply")
        tenant, _, ntf_id = (reply.reference or "").partition(":")
        return [InboundReply(reply.sender, reply.text, reply.brand, tenant or None, ntf_id or None)]

    @classmethod
    def receipts_ack(cls, received: int, applied: int) -> Ack:
        """How many receipts were read and applied."""
        return Ack.json({"ok": True, "received": received, "applied": applied})

    @classmethod
    def replies_ack(cls, outcomes: Sequence[Mapping[str, str]]) -> Ack:
        """What was done with the one reply."""
        return Ack.json({"ok": True, **(outcomes[0] if outcomes else {})})


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
        # WeChat subscribe messages: the template, the page a tap opens, the values.
        "template_id": message.template_id,
        "page": message.page,
        "data": dict(message.data) or None,
    }
