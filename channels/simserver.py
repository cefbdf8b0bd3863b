"""The provider simulator: a real HTTP server that behaves like an SMS/MMS/push/email provider.

It accepts sends (``POST /v1/send``), keeps what each member's phone, inbox or
device received (``GET /messages``), posts delivery receipts back to the
gateway in batches, forwards member replies (``POST /replies``) and injects
faults (``POST``/``DELETE /faults``). Plain ASGI: no web framework needed.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import random
import time
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs

import httpx

from channels.signing import SIGNATURE_HEADER, sign, verify

log = logging.getLogger("tidings.simulator")

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

CHANNELS = ("sms", "mms", "push", "email")
FAULT_MODES = ("http_500", "timeout", "reject_number", "http_429")
MAX_BODY = 1_048_576


@dataclass
class Fault:
    """One channel's injected trouble."""

    error_rate: float = 0.0
    latency_ms: float = 0.0
    mode: str = "http_500"


@dataclass
class SimState:
    """Everything the simulator remembers (in memory: it is a test double of a provider)."""

    messages: list[dict[str, Any]] = field(default_factory=list)
    by_reference: dict[str, str] = field(default_factory=dict)
    faults: dict[str, Fault] = field(default_factory=dict)
    receipts: list[dict[str, Any]] = field(default_factory=list)
    sends_seen: int = 0
    duplicates: int = 0
    # Receipt trouble, as real providers cause it: each receipt posted twice, batches out of order.
    duplicate_receipts: bool = False
    shuffle_receipts: bool = False


class Simulator:
    """The ASGI application."""

    def __init__(
        self,
        gateway_url: str,
        secret: str,
        *,
        receipt_interval: float = 0.05,
        undelivered_prefix: str = "+8613900000",
    ) -> None:
        self.gateway_url = gateway_url.rstrip("/")
        self.secret = secret
        self.receipt_interval = receipt_interval
        # Numbers with this prefix are "switched off": sends succeed but the receipt says undelivered.
        self.undelivered_prefix = undelivered_prefix
        self.state = SimState()
        self._ids = itertools.count(1)
        self._client: httpx.AsyncClient | None = None
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()

    # -- ASGI ----------------------------------------------------------------------------------
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        self._ensure_started()
        method, path = scope["method"], scope["path"]
        try:
            body = await _read_body(receive)
        except ValueError:
            await _respond(send, 413, {"code": "body_too_large"})
            return
        query = {k: v[-1] for k, v in parse_qs(scope.get("query_string", b"").decode()).items()}
        headers = {k.decode().lower(): v.decode() for k, v in scope.get("headers", [])}
        try:
            status, payload, extra = await self._route(method, path, query, headers, body)
        except (ValueError, KeyError, TypeError) as exc:
            status, payload, extra = 400, {"code": "bad_request", "message": str(exc)}, {}
        await _respond(send, status, payload, extra)

    async def _route(
        self, method: str, path: str, query: dict[str, str], headers: dict[str, str], body: bytes
    ) -> tuple[int, Any, dict[str, str]]:
        if path == "/v1/send" and method == "POST":
            return await self._send(headers, body)
        if path == "/v1/send/batch" and method == "POST":
            return await self._send_batch(headers, body)
        if path == "/messages" and method == "GET":
            return 200, self.messages(query.get("to")), {}
        if path == "/messages" and method == "DELETE":
            self.state = SimState(faults=self.state.faults)
            return 200, {"ok": True}, {}
        if path == "/faults" and method == "POST":
            return 200, self.set_faults(json.loads(body or b"{}")), {}
        if path == "/faults" and method == "DELETE":
            self.state.faults.clear()
            self.state.duplicate_receipts = self.state.shuffle_receipts = False
            return 200, {"ok": True}, {}
        if path == "/faults" and method == "GET":
            return 200, {c: vars(f) for c, f in self.state.faults.items()}, {}
        if path == "/replies" and method == "POST":
            return await self._reply(json.loads(body or b"{}"))
        if path == "/stats" and method == "GET":
            s = self.state
            first = s.messages[0]["received_at"] if s.messages else None
            last = s.messages[-1]["received_at"] if s.messages else None
            return (
                200,
                {
                    "messages": len(s.messages),
                    "sends": s.sends_seen,
                    "duplicates": s.duplicates,
                    "first_at": first,
                    "last_at": last,
                },
                {},
            )
        if path == "/healthz":
            return 200, {"ok": True}, {}
        return 404, {"code": "not_found"}, {}

    # -- provider side ---------------------------------------------------------------------------
    async def _send(self, headers: dict[str, str], body: bytes) -> tuple[int, Any, dict[str, str]]:
        if not verify(self.secret, body, headers.get(SIGNATURE_HEADER)):
            return 401, {"code": "bad_signature", "message": "signature does not match"}, {}
        msg = json.loads(body)
        await self._request_faults([msg.get("channel")])
        return self._accept_one(msg)

    async def _send_batch(self, headers: dict[str, str], body: bytes) -> tuple[int, Any, dict[str, str]]:
        """Many messages in one call (like Alibaba's SendBatchSms), one result per message."""
        if not verify(self.secret, body, headers.get(SIGNATURE_HEADER)):
            return 401, {"code": "bad_signature", "message": "signature does not match"}, {}
        messages = json.loads(body).get("messages")
        if not isinstance(messages, list) or not 0 < len(messages) <= 1000:
            return 400, {"code": "bad_request", "message": "messages must be a list of 1 to 1000 items"}, {}
        await self._request_faults(list({m.get("channel") for m in messages if isinstance(m, dict)}))
        results = []
        for m in messages:
            status, payload, _ = self._accept_one(m if isinstance(m, dict) else {})
            results.append({"status": status, **payload})
        return 200, {"results": results}, {}

    async def _request_faults(self, channels: list[Any]) -> None:
        """Latency and time-outs hit a whole request."""
        for channel in channels:
            fault = self.state.faults.get(str(channel)) or self.state.faults.get("*")
            if fault is None:
                continue
            if fault.latency_ms:
                await asyncio.sleep(fault.latency_ms / 1000)
            if fault.mode == "timeout" and fault.error_rate and random.random() < fault.error_rate:
                await asyncio.sleep(3600)  # the client gives up first
            return

    def _accept_one(self, msg: dict[str, Any]) -> tuple[int, dict[str, Any], dict[str, str]]:
        channel = msg.get("channel")
        if channel not in CHANNELS or not msg.get("to") or not msg.get("reference"):
            return 400, {"code": "bad_request", "message": "channel, to and reference are required"}, {}
        self.state.sends_seen += 1
        fault = self.state.faults.get(channel) or self.state.faults.get("*")
        if (
            fault is not None
            and fault.mode != "timeout"
            and fault.error_rate
            and random.random() < fault.error_rate
        ):
            if fault.mode == "reject_number":
                return 400, {"code": "invalid_number", "message": "number rejected by carrier"}, {}
            if fault.mode == "http_429":
                return 429, {"code": "throttled", "message": "slow down"}, {"retry-after": "1"}
            return 500, {"code": "internal_error", "message": "injected failure"}, {}
        reference = str(msg["reference"])
        known = self.state.by_reference.get(reference)
        if known is not None:
            # A resend of a message we already have (the sender timed out or crashed): idempotent.
            self.state.duplicates += 1
            return 200, {"provider_message_id": known, "duplicate": True}, {}
        pmid = f"sim-{next(self._ids):08d}"
        self.state.by_reference[reference] = pmid
        now = datetime.now(UTC).isoformat(timespec="milliseconds")
        self.state.messages.append(
            {
                "channel": channel,
                "to": msg["to"],
                "text": msg.get("text"),
                "subject": msg.get("subject"),
                "title": msg.get("title"),
                "html": msg.get("html"),
                "media": msg.get("media") or [],
                "brand": msg.get("brand"),
                "reference": reference,
                "provider_message_id": pmid,
                "received_at": now,
            }
        )
        status = "undelivered" if str(msg["to"]).startswith(self.undelivered_prefix) else "delivered"
        self.state.receipts.append(
            {
                "reference": reference,
                "provider_message_id": pmid,
                "channel": channel,
                "status": status,
                "code": "DELIVERED" if status == "delivered" else "MK:0001",
                "at": now,
            }
        )
        self._wake.set()
        return 200, {"provider_message_id": pmid}, {}

    def messages(self, to: str | None) -> list[dict[str, Any]]:
        """What each address received, oldest first."""
        if to is None:
            return list(self.state.messages)
        return [m for m in self.state.messages if m["to"] == to]

    def set_faults(self, spec: dict[str, Any]) -> dict[str, Any]:
        """Install a fault for one channel (or every channel when ``channel`` is null)."""
        channel = spec.get("channel") or "*"
        if channel != "*" and channel not in CHANNELS:
            raise ValueError(f"unknown channel {channel!r}")
        mode = spec.get("mode") or "http_500"
        if mode not in FAULT_MODES:
            raise ValueError(f"mode must be one of {', '.join(FAULT_MODES)}")
        rate = float(spec.get("error_rate", 0.0))
        if not 0.0 <= rate <= 1.0:
            raise ValueError("error_rate must be between 0 and 1")
        fault = Fault(error_rate=rate, latency_ms=max(0.0, float(spec.get("latency_ms", 0.0))), mode=mode)
        self.state.faults[channel] = fault
        self.state.duplicate_receipts = bool(spec.get("duplicate_receipts", self.state.duplicate_receipts))
        self.state.shuffle_receipts = bool(spec.get("shuffle_receipts", self.state.shuffle_receipts))
        return {
            "channel": channel,
            **vars(fault),
            "duplicate_receipts": self.state.duplicate_receipts,
            "shuffle_receipts": self.state.shuffle_receipts,
        }

    async def _reply(self, spec: dict[str, Any]) -> tuple[int, Any, dict[str, str]]:
        if not spec.get("from") or not spec.get("text"):
            raise ValueError("from and text are required")
        # Like a provider's sub-port (extend code): the reply is tied to the last message sent to that number.
        sender = str(spec["from"])
        last = [
            m
            for m in self.state.messages
            if m["to"] == sender and (not spec.get("brand") or m.get("brand") == spec["brand"])
        ]
        payload = {
            "from": sender,
            "to": spec.get("to") or "106900000001",
            "text": spec["text"],
            "brand": spec.get("brand") or (last[-1].get("brand") if last else None),
            "reference": last[-1]["reference"] if last else None,
            "received_at": datetime.now(UTC).isoformat(timespec="milliseconds"),
        }
        try:
            resp = await self._post_signed("/v1/inbound/simulator/replies", payload)
        except httpx.HTTPError as exc:
            return 502, {"code": "gateway_unreachable", "message": type(exc).__name__}, {}
        try:
            answer = resp.json()
        except ValueError:
            answer = {"body": resp.text[:500]}
        return (
            resp.status_code,
            {"forwarded": True, "gateway_status": resp.status_code, "gateway": answer},
            {},
        )

    # -- receipts ------------------------------------------------------------------------------
    def _ensure_started(self) -> None:
        if self._task is None:
            self._client = httpx.AsyncClient(timeout=5.0)
            self._task = asyncio.get_running_loop().create_task(self._receipt_loop())

    async def _receipt_loop(self) -> None:
        while True:
            await self._wake.wait()
            await asyncio.sleep(self.receipt_interval)
            self._wake.clear()
            while self.state.receipts:
                batch, self.state.receipts = self.state.receipts[:500], self.state.receipts[500:]
                if self.state.shuffle_receipts:
                    random.shuffle(batch)
                if self.state.duplicate_receipts:
                    again = list(batch)
                    random.shuffle(again)
                    await self._post_receipts(again)  # the same receipts once more, another order
                if not await self._post_receipts(batch):
                    self.state.receipts = batch + self.state.receipts
                    await asyncio.sleep(0.5)
                    break
            if self.state.receipts:
                self._wake.set()

    async def _post_signed(self, path: str, payload: dict[str, Any]) -> httpx.Response:
        """POST to the gateway as a provider would: JSON signed with the shared secret."""
        raw = json.dumps(payload, ensure_ascii=False).encode()
        assert self._client is not None
        headers = {"content-type": "application/json", SIGNATURE_HEADER: sign(self.secret, raw)}
        return await self._client.post(f"{self.gateway_url}{path}", content=raw, headers=headers)

    async def _post_receipts(self, batch: list[dict[str, Any]]) -> bool:
        try:
            resp = await self._post_signed("/v1/inbound/simulator/receipts", {"receipts": batch})
        except httpx.HTTPError as exc:
            log.warning("receipts not delivered to the gateway: %s", type(exc).__name__)
            return False
        if resp.status_code >= 500:
            return False
        if resp.status_code >= 400:
            log.error("gateway refused receipts: %s %s", resp.status_code, resp.text[:200])
        return True

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            msg = await receive()
            if msg["type"] == "lifespan.startup":
                self._ensure_started()
                await send({"type": "lifespan.startup.complete"})
            elif msg["type"] == "lifespan.shutdown":
                await self.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def aclose(self) -> None:
        """Flush what receipts can be flushed and stop."""
        if self._task is not None:
            deadline = time.monotonic() + 2.0
            while self.state.receipts and time.monotonic() < deadline:
                batch, self.state.receipts = self.state.receipts[:500], self.state.receipts[500:]
                if self.state.shuffle_receipts:
                    random.shuffle(batch)
                if self.state.duplicate_receipts:
                    again = list(batch)
                    random.shuffle(again)
                    await self._post_receipts(again)  # the same receipts once more, another order
                if not await self._post_receipts(batch):
                    break
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._client is not None:
            await self._client.aclose()
            self._client = None


async def _read_body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        msg = await receive()
        chunk = msg.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY:
            raise ValueError("body too large")
        chunks.append(chunk)
        if not msg.get("more_body"):
            return b"".join(chunks)


async def _respond(send: Send, status: int, payload: Any, extra: dict[str, str] | None = None) -> None:
    raw = json.dumps(payload, ensure_ascii=False).encode()
    headers = [
        (b"content-type", b"application/json; charset=utf-8"),
        (b"content-length", str(len(raw)).encode()),
    ]
    headers += [(k.encode(), v.encode()) for k, v in (extra or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": raw})
