"""The provider simulator: a real HTTP server that behaves like an SMS/MMS/push/email/voice provider.

It accepts sends (``POST /v1/send``), keeps what each member's phone, inbox or
device received (``GET /messages``), posts delivery receipts back to the
gateway in batches, forwards member replies (``POST /replies``) and injects
faults (``POST``/``DELETE /faults``). Plain ASGI: no web framework needed.

This module is the HTTP side (routing, bodies, answers); what it remembers and the rules it
applies are in ``channels/simstate.py``, its calls to the gateway in ``channels/simcallbacks.py``.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import json
import random
from collections.abc import Awaitable, Callable, MutableMapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote_plus

import msgspec

from channels.addresses import InvalidAddress
from channels.signing import SIGNATURE_HEADER, verify
from channels.simcallbacks import GatewayCallbacks
from channels.simnumbers import UNDELIVERED_PREFIX
from channels.simstate import Answer, SimState

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

MAX_BODY = 1_048_576


class Simulator:
    """The ASGI application."""

    def __init__(
        self,
        gateway_url: str,
        secret: str,
        *,
        receipt_interval: float = 0.05,
        undelivered_prefix: str = UNDELIVERED_PREFIX,
        default_region: str = "CN",
    ) -> None:
        """``undelivered_prefix``: the E.164 prefix of the "switched off" numbers (sends succeed, the
        receipt says undelivered); ``default_region``: where a number written without its country
        code is read (the gateway's ``TIDINGS_DEFAULT_REGION``, CN unless set)."""
        self.secret = secret
        self.state = SimState(default_region=default_region, undelivered_prefix=undelivered_prefix)
        self.webhooks: collections.deque[dict[str, Any]] = collections.deque(maxlen=1000)
        self._ids = itertools.count(1)
        self.callbacks = GatewayCallbacks(gateway_url, secret, lambda: self.state, receipt_interval)

    # -- ASGI ----------------------------------------------------------------------------------
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        self.callbacks.start()
        method, path = scope["method"], scope["path"]
        try:
            body = await _read_body(receive)
        except ValueError:
            await _respond(send, 413, {"code": "body_too_large"})
            return
        query = _query(scope.get("query_string", b"").decode("utf-8", "replace"))
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
            try:
                return 200, self.messages(query.get("to"), query.get("channel")), {}
            except InvalidAddress as exc:
                return 400, {"code": "invalid_recipient", "message": f"to: {exc}"}, {}
        if path == "/messages" and method == "DELETE":
            self.state = self.state.cleared()
            return 200, {"ok": True}, {}
        if path == "/faults" and method == "POST":
            return 200, self.set_faults(json.loads(body or b"{}")), {}
        if path == "/faults" and method == "DELETE":
            self.state.clear_faults()
            return 200, {"ok": True}, {}
        if path == "/faults" and method == "GET":
            return 200, {c: vars(f) for c, f in self.state.faults.items()}, {}
        if path == "/taps" and method == "POST":
            return await self.callbacks.tap(json.loads(body or b"{}"))
        if path == "/replies" and method == "POST":
            return await self.callbacks.forward_reply(json.loads(body or b"{}"))
        if path == "/webhooks" and method == "POST":
            return self._webhook(headers, body)
        if path == "/webhooks" and method == "GET":
            return 200, list(self.webhooks), {}
        if path == "/webhooks" and method == "DELETE":
            self.webhooks.clear()
            return 200, {"ok": True}, {}
        if path == "/stats" and method == "GET":
            return 200, self.state.stats(), {}
        if path == "/healthz":
            return 200, {"ok": True}, {}
        return 404, {"code": "not_found"}, {}

    def _webhook(self, headers: dict[str, str], body: bytes) -> Answer:
        """A webhook receiver for trying Tidings' events out: keeps the last 1,000 deliveries as they
        came (the signature headers, the body as sent, and the event it holds)."""
        try:
            event = json.loads(body)
        except ValueError:
            return 400, {"code": "bad_request", "message": "the body is not JSON"}, {}
        self.webhooks.append(
            {
                "received_at": datetime.now(UTC).isoformat(),
                "headers": {k: v for k, v in headers.items() if k.startswith("webhook-")},
                "body": body.decode("utf-8", "replace"),
                "event": event,
            }
        )
        return 200, {"ok": True}, {}

    # -- provider side ---------------------------------------------------------------------------
    async def _send(self, headers: dict[str, str], body: bytes) -> Answer:
        if not verify(self.secret, body, headers.get(SIGNATURE_HEADER)):
            return 401, {"code": "bad_signature", "message": "signature does not match"}, {}
        msg = msgspec.json.decode(body)
        await self._request_faults([msg.get("channel")])
        return self._accept_one(msg)

    async def _send_batch(self, headers: dict[str, str], body: bytes) -> Answer:
        """Many messages in one call (like Alibaba's SendBatchSms), one result per message."""
        if not verify(self.secret, body, headers.get(SIGNATURE_HEADER)):
            return 401, {"code": "bad_signature", "message": "signature does not match"}, {}
        messages = msgspec.json.decode(body).get("messages")
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
            fault = self.state.fault_for(channel)
            if fault is None:
                continue
            if fault.latency_ms:
                await asyncio.sleep(fault.latency_ms / 1000)
            if fault.mode == "timeout" and fault.error_rate and random.random() < fault.error_rate:
                await asyncio.sleep(3600)  # the client gives up first
            return

    def _accept_one(self, msg: dict[str, Any]) -> Answer:
        answer = self.state.accept(msg, self._ids)
        if self.state.receipts:
            self.callbacks.wake()
        return answer

    def messages(self, to: str | None, channel: str | None = None) -> list[dict[str, Any]]:
        """What an address received, written in any form (``channels/simnumbers.py``), oldest first;
        every message when ``to`` is None; one channel's with ``channel`` (``?channel=voice``: the calls,
        each with its ``call`` outcome). InvalidAddress for a number or email that is not one."""
        return self.state.messages_to(to, channel)

    def set_faults(self, spec: dict[str, Any]) -> dict[str, Any]:
        """Install a fault for one channel (or every channel when ``channel`` is null)."""
        return self.state.set_faults(spec)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            msg = await receive()
            if msg["type"] == "lifespan.startup":
                self.callbacks.start()
                await send({"type": "lifespan.startup.complete"})
            elif msg["type"] == "lifespan.shutdown":
                await self.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def aclose(self) -> None:
        """Flush what receipts can be flushed and stop."""
        await self.callbacks.aclose()


def _query(raw: str) -> dict[str, str]:
    """The query's parameters, the last value of each, blank ones kept (``?to=`` is an empty ``to``).

    Form decoding, except that a ``+`` that starts a value and is followed by a digit stays a plus:
    ``?to=+14155550100`` typed into curl unencoded means that number, where a space before its
    digits would mean nothing (an encoded leading space before a letter, ``+Lina@…``, is a space).
    """
    params: dict[str, str] = {}
    for pair in raw.split("&"):
        if not pair:
            continue
        name, _, value = pair.partition("=")
        if value[:1] == "+" and value[1:2].isdigit():
            value = "%2B" + value[1:]
        params[unquote_plus(name, errors="replace")] = unquote_plus(value, errors="replace")
    return params


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
    raw = msgspec.json.encode(payload)
    headers = [
        (b"content-type", b"application/json; charset=utf-8"),
        (b"content-length", str(len(raw)).encode()),
    ]
    headers += [(k.encode(), v.encode()) for k, v in (extra or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": raw})
