"""What the provider simulator remembers, and the rules it applies to a send as a provider would.

The messages it took (``GET /messages``), its dedup by our reference, the receipts waiting to be
posted and the injected faults (``/faults``); how it reads addresses and which numbers are switched
off is ``channels/simnumbers.py``. No I/O here:
the ASGI app (``channels/simserver.py``) and the calls back to the gateway
(``channels/simcallbacks.py``) use it.
"""

from __future__ import annotations

import gc
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from channels.simnumbers import REFUSING_OPENID_PREFIX, UNDELIVERED_PREFIX, key_of, lookup_key, receipt_for

CHANNELS = ("sms", "mms", "push", "email", "voice", "wechat")
FREEZE_EVERY = 10_000  # messages kept between moves of everything into the permanent generation
FAULT_MODES = ("http_500", "timeout", "reject_number", "http_429")

# What a handler answers: HTTP status, JSON body, extra response headers.
Answer = tuple[int, dict[str, Any], dict[str, str]]


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
    # The same messages by address key (simnumbers.key_of): E.164, a case-folded email, a token.
    by_address: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    by_reference: dict[str, str] = field(default_factory=dict)
    faults: dict[str, Fault] = field(default_factory=dict)
    receipts: list[dict[str, Any]] = field(default_factory=list)
    sends_seen: int = 0
    duplicates: int = 0
    receipts_taken: int = 0  # receipts the gateway answered (below 500) in a receipt batch
    # Receipt trouble, as real providers cause it: each receipt posted twice, batches out of order.
    duplicate_receipts: bool = False
    shuffle_receipts: bool = False
    # The rules, kept when the messages are cleared: the region a national number is read in, and
    # the E.164 prefix of the switched-off numbers.
    default_region: str = "CN"
    undelivered_prefix: str = UNDELIVERED_PREFIX

    def cleared(self) -> SimState:
        """No messages, receipts or counts; the same faults and rules (``DELETE /messages``)."""
        return SimState(
            faults=self.faults, default_region=self.default_region, undelivered_prefix=self.undelivered_prefix
        )

    def fault_for(self, channel: object) -> Fault | None:
        """The fault injected for this channel, else the one for every channel."""
        return self.faults.get(str(channel)) or self.faults.get("*")

    def accept(self, msg: dict[str, Any], ids: Iterator[int]) -> Answer:
        """Take one message as the provider would: injected failures, dedup by reference, a receipt queued."""
        channel = msg.get("channel")
        if channel not in CHANNELS or not msg.get("to") or not msg.get("reference"):
            return 400, {"code": "bad_request", "message": "channel, to and reference are required"}, {}
        self.sends_seen += 1
        fault = self.fault_for(channel)
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
        if channel == "wechat" and str(msg["to"]).startswith(REFUSING_OPENID_PREFIX):
            # As WeChat answers a member who refused the template or has no grant left for it.
            return 400, {"code": "43101", "message": "user refuse to accept the msg"}, {}
        reference = str(msg["reference"])
        known = self.by_reference.get(reference)
        if known is not None:
            # A resend of a message we already have (the sender timed out or crashed): idempotent.
            self.duplicates += 1
            return 200, {"provider_message_id": known, "duplicate": True}, {}
        pmid = f"sim-{next(ids):08d}"
        self.by_reference[reference] = pmid
        now = datetime.now(UTC).isoformat(timespec="milliseconds")
        key = key_of(str(msg["to"]), self.default_region)
        message: dict[str, Any] = {
            "channel": channel,
            "to": msg["to"],
            "text": msg.get("text"),
            "subject": msg.get("subject"),
            "title": msg.get("title"),
            "html": msg.get("html"),
            "media": msg.get("media") or [],
            "brand": msg.get("brand"),
            "reference": reference,
            "template_id": msg.get("template_id"),
            "page": msg.get("page"),
            "data": msg.get("data"),
            "provider_message_id": pmid,
            "received_at": now,
        }
        status, code = receipt_for(key, self.undelivered_prefix, str(channel))
        if channel == "voice":
            # A call: the member's phone rings and the text is read out (``play_times`` over).
            message["call"] = {
                "answered": status == "delivered",
                "status": code,
                "play_times": int(msg.get("play_times") or 2),
            }
        self.messages.append(message)
        self.by_address.setdefault(key, []).append(message)
        if len(self.messages) % FREEZE_EVERY == 0:
            # What it keeps is acyclic (reference counting frees it); left to the cyclic collector, a
            # million kept messages made full collections that stalled sends past the gateway's
            # time-out (a resend, counted as a duplicate). Frozen, they are never traversed again.
            gc.freeze()
        self.receipts.append(
            {
                "reference": reference,
                "provider_message_id": pmid,
                "channel": channel,
                "status": status,
                "code": code,
                "at": now,
            }
        )
        return 200, {"provider_message_id": pmid}, {}

    def messages_to(self, to: str | None, channel: str | None = None) -> list[dict[str, Any]]:
        """What an address received (any written form of it), oldest first; every message without one;
        only one channel's with ``channel`` (``voice``: the calls).

        InvalidAddress for a ``to`` that looks like a phone number or email but is not one.
        """
        found = self.messages if to is None else self.by_address.get(lookup_key(to, self.default_region), [])
        return [m for m in found if channel is None or m.get("channel") == channel]

    def last_sent_to(self, sender: str, brand: str | None) -> dict[str, Any] | None:
        """The last message sent to a number (of that brand, if named): what a reply from it answers."""
        sent = self.by_address.get(key_of(sender, self.default_region), [])
        # A call cannot be answered by text: a reply answers the last text message.
        last = [m for m in sent if m.get("channel") != "voice" and (not brand or m.get("brand") == brand)]
        return last[-1] if last else None

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
        self.faults[channel] = fault
        self.duplicate_receipts = bool(spec.get("duplicate_receipts", self.duplicate_receipts))
        self.shuffle_receipts = bool(spec.get("shuffle_receipts", self.shuffle_receipts))
        return {
            "channel": channel,
            **vars(fault),
            "duplicate_receipts": self.duplicate_receipts,
            "shuffle_receipts": self.shuffle_receipts,
        }

    def clear_faults(self) -> None:
        """No injected trouble any more, receipt trouble included."""
        self.faults.clear()
        self.duplicate_receipts = self.shuffle_receipts = False

    def stats(self) -> dict[str, Any]:
        """How much came in: messages kept, sends seen, resends recognised, first and last arrival; receipts
        waiting to be posted and taken by the gateway."""
        return {
            "messages": len(self.messages),
            "sends": self.sends_seen,
            "duplicates": self.duplicates,
            "receipts_waiting": len(self.receipts),
            "receipts_taken": self.receipts_taken,
            "first_at": self.messages[0]["received_at"] if self.messages else None,
            "last_at": self.messages[-1]["received_at"] if self.messages else None,
        }
