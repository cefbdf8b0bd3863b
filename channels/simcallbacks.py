"""The provider simulator's calls back to the gateway, signed like a provider's: receipts and replies.

Receipts go in batches of up to 500, a short while after the sends (``receipt_interval``), as
real providers post them; a batch the gateway could not take (unreachable, 5xx) is posted again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import re
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import msgspec

from channels.signing import SIGNATURE_HEADER, sign
from channels.simstate import Answer, SimState

log = logging.getLogger("tidings.simulator")

RECEIPT_BATCH = 500
# A member's phone opening a link (not a robot: the gateway counts it).
PHONE_AGENT = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.5 Mobile/15E148 Safari/604.1"
)
_URL = re.compile(r"https?://[^\s<>\"'，。！？、；：（）【】《》]+")


class GatewayCallbacks:
    """Posts receipt batches on a timer and forwards member replies, to one gateway."""

    def __init__(
        self, gateway_url: str, secret: str, state: Callable[[], SimState], receipt_interval: float
    ) -> None:
        self.gateway_url = gateway_url.rstrip("/")
        self.secret = secret
        self.receipt_interval = receipt_interval
        self._state = state  # the simulator's current state (DELETE /messages replaces it)
        self._client: httpx.AsyncClient | None = None
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()

    def start(self) -> None:
        """Start the receipt loop (once) on the running event loop."""
        if self._task is None:
            self._client = httpx.AsyncClient(timeout=5.0)
            self._task = asyncio.get_running_loop().create_task(self._receipt_loop())

    def wake(self) -> None:
        """Receipts are waiting."""
        self._wake.set()

    async def tap(self, spec: dict[str, Any]) -> Answer:
        """A member taps the link in a message they received (the last one to ``to``, or message
        ``index``; ``link``: which link, default the first), as a phone would unless ``user_agent``
        says otherwise; ``method`` HEAD for a prefetch. Answers where the link sent them."""
        if not spec.get("to"):
            raise ValueError("to is required")
        got = self._state().messages_to(str(spec["to"]))
        if not got:
            return 404, {"code": "no_message", "message": "nothing was sent to that address"}, {}
        msg = got[int(spec.get("index", -1))]
        text = " ".join(str(msg.get(k) or "") for k in ("text", "body", "html"))
        links = _URL.findall(text)
        if not links:
            return 404, {"code": "no_link", "message": "that message carries no link"}, {}
        url = links[int(spec.get("link", 0))]
        assert self._client is not None
        try:
            resp = await self._client.request(
                str(spec.get("method") or "GET"),
                url,
                headers={"user-agent": str(spec.get("user_agent") or PHONE_AGENT)},
                follow_redirects=False,
            )
        except httpx.HTTPError as exc:
            return 502, {"code": "link_unreachable", "message": type(exc).__name__}, {}
        return 200, {"url": url, "status": resp.status_code, "location": resp.headers.get("location")}, {}

    async def forward_reply(self, spec: dict[str, Any]) -> Answer:
        """A member's reply, posted to the gateway like a provider's reply webhook."""
        if not spec.get("from") or not spec.get("text"):
            raise ValueError("from and text are required")
        # Like a provider's sub-port (extend code): the reply is tied to the last message sent to that number.
        sender = str(spec["from"])
        last = self._state().last_sent_to(sender, spec.get("brand"))
        payload = {
            "from": sender,
            "to": spec.get("to") or "106900000001",
            "text": spec["text"],
            "brand": spec.get("brand") or (last.get("brand") if last else None),
            "reference": last["reference"] if last else None,
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

    async def _receipt_loop(self) -> None:
        while True:
            await self._wake.wait()
            await asyncio.sleep(self.receipt_interval)
            self._wake.clear()
            while self._state().receipts:
                if not await self._post_next_batch():
                    await asyncio.sleep(0.5)
                    break
            if self._state().receipts:
                self._wake.set()

    async def _post_next_batch(self) -> bool:
        """Post the oldest waiting receipts; put them back if the gateway did not take them."""
        state = self._state()
        batch, state.receipts = state.receipts[:RECEIPT_BATCH], state.receipts[RECEIPT_BATCH:]
        if state.shuffle_receipts:
            random.shuffle(batch)
        if state.duplicate_receipts:
            again = list(batch)
            random.shuffle(again)
            await self._post_receipts(again)  # the same receipts once more, another order
        if not await self._post_receipts(batch):
            state.receipts = batch + state.receipts
            return False
        self._state().receipts_taken += len(batch)  # the state now, if it was cleared meanwhile
        return True

    async def _post_signed(self, path: str, payload: dict[str, Any]) -> httpx.Response:
        """POST to the gateway as a provider would: JSON signed with the shared secret."""
        raw = msgspec.json.encode(payload)
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

    async def aclose(self) -> None:
        """Flush what receipts can be flushed (for up to two seconds) and stop."""
        if self._task is not None:
            deadline = time.monotonic() + 2.0
            while self._state().receipts and time.monotonic() < deadline:
                if not await self._post_next_batch():
                    break
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._client is not None:
            await self._client.aclose()
            self._client = None
