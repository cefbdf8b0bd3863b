"""Audit events on their way in: the per-tenant Redis stream, and the rows the audit store keeps.

Notification events reach the stream from the Lua scripts that change the notification (see
``lua/audit.lua``); tenant-level changes (opt-outs, templates, API keys) from the code here, each in the
same round trip as its change. The consumer (``auditconsumer``) turns stream entries into ``AuditRow``
values: one per event, the address only as its keyed hash and masked form, with any phone number or
email address inside free text masked too.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import Any

import msgspec
import redis.asyncio as aioredis
from redis.asyncio.client import Pipeline

from gateway.recipients import scrub
from gateway.state import keys

# The audit's event types. Notification events are the timeline's own; the rest are tenant changes.
NOTIFICATION_TYPES = (
    "accepted",
    "compliance",
    "scheduled",
    "deferred",
    "attempt",
    "sent",
    "receipt",
    "suppressed",
    "failed",
    "cancelled",
    "replayed",
    "fallback",
    "click",
    "conversion",
    "complaint",
    "unsubscribed",
)
TENANT_TYPES = (
    "rejected",
    "opt_out",
    "opt_in",
    "reply",
    "webhook_changed",
    "template_changed",
    "api_key_created",
    "api_key_revoked",
    "optouts_exported",
    "optouts_reconciled",
    "wechat_grant",
    "series",
    "console",
    "verification",
)
TYPES = NOTIFICATION_TYPES + TENANT_TYPES

_json = msgspec.json.Encoder(order="sorted")
_decode = msgspec.json.Decoder()


class AuditRow(msgspec.Struct, frozen=True):
    """One event as the audit store keeps it (before the chain gives it ``seq`` and hashes)."""

    tenant: str
    event_id: str
    at_ms: int
    type: str
    notification_id: str
    channel: str
    member: str  # keyed hash of the address ('' when the event has none)
    address: str  # masked address
    body: str  # the event itself, canonical JSON (sorted keys), free text scrubbed


def tenant_of(stream: str) -> str:
    """``tid:{acme}:audit`` -> ``acme``."""
    start = stream.index("{") + 1
    return stream[start : stream.index("}", start)]


def decode_events(fields: Mapping[str, str]) -> list[tuple[int, dict[str, Any]]]:
    """The events of one stream entry as (line index, event), each line decoded once."""
    return [(i, _decode.decode(line)) for i, line in enumerate(fields.get("e", "").split("\n")) if line]


def rows_of(
    tenant: str,
    entry_id: str,
    fields: Mapping[str, str],
    events: list[tuple[int, dict[str, Any]]] | None = None,
) -> Iterator[AuditRow]:
    """The audit rows of one stream entry (one per event line); event ids are ``<entry id>.<index>``.
    ``events``: the entry's ``decode_events``, when the caller already has them."""
    stream_ms = int(entry_id.partition("-")[0])
    notification_id, channel = fields.get("n", ""), fields.get("c", "")
    member, address = fields.get("m", ""), fields.get("a", "")
    for index, event in decode_events(fields) if events is None else events:
        yield AuditRow(
            tenant=tenant,
            event_id=f"{entry_id}.{index}",
            at_ms=_at_ms(event.get("at"), stream_ms),
            type=str(event.get("type", "unknown")),
            notification_id=notification_id,
            channel=channel or str(event.get("channel") or ""),
            member=member,
            address=address,
            body=scrub(_json.encode(event).decode()),
        )


def _at_ms(at: Any, fallback: int) -> int:
    if isinstance(at, str):
        try:
            return int(datetime.fromisoformat(at).timestamp() * 1000)
        except ValueError:
            pass
    return fallback


def entry(
    event: str, *, member: str = "", masked: str = "", channel: str = "", ntf_id: str = "", address: str = ""
) -> dict[str, str]:
    """The fields of one stream entry (the same shape the Lua scripts write). ``address`` (field p)
    is for the webhook outbox of endpoints that receive addresses; the audit store never keeps it."""
    fields = {"n": ntf_id, "m": member, "a": masked, "c": channel, "e": event}
    if address:
        fields["p"] = address
    return fields


def queue(pipe: Pipeline, tenant: str, event: str, **where: str) -> None:
    """Add one tenant-level event to a MULTI pipeline, beside the change it records."""
    pipe.xadd(keys.audit(tenant), entry(event, **where))  # type: ignore[arg-type]


async def record(redis: aioredis.Redis, tenant: str, event: str, **where: str) -> None:
    """Add one tenant-level event that goes with no state change (a rejected request)."""
    await redis.xadd(keys.audit(tenant), entry(event, **where))  # type: ignore[arg-type]


def parse_anchor(raw: bytes | str | None) -> tuple[int, str] | None:
    """The ``seq hash`` anchor the consumer keeps in Redis, as (seq, hash)."""
    if not raw:
        return None
    seq, _, digest = (raw.decode() if isinstance(raw, bytes) else raw).partition(" ")
    return int(seq), digest
