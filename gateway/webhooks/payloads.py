"""What an endpoint receives: webhook events made from the audit entries handed to the outbox.

One audit entry holds one or more events (a notification's accept writes several); each that an
endpoint can subscribe to becomes a webhook event whose id is derived from the entry's id, so a
redelivery (or a second hand-over after a crash) carries the same ``webhook-id``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgspec

_line = msgspec.json.Decoder(dict[str, Any])
_fields = msgspec.json.Decoder(dict[str, str])

_NOTIFICATION_TYPES = {
    "accepted": "notification.accepted",
    "suppressed": "notification.suppressed",
    "sent": "notification.sent",
    "failed": "notification.failed",
    "cancelled": "notification.cancelled",
}


@dataclass(frozen=True)
class Outgoing:
    """One webhook event before it is addressed to an endpoint."""

    id: str
    type: str
    created_at: str
    member: str  # keyed hash of the member's address: deliveries for one member keep their order
    notification_id: str
    data: dict[str, Any]
    address_field: str | None = None  # the data member that holds the (masked) address
    address: str = ""  # the address itself, for endpoints that receive addresses

    def body(self, tenant: str, *, include_address: bool, extra: dict[str, Any] | None = None) -> bytes:
        """The JSON body for one endpoint."""
        data = {**self.data, **(extra or {})}
        if include_address and self.address_field and self.address:
            data[self.address_field] = self.address
        doc = {
            "id": self.id,
            "type": self.type,
            "created_at": self.created_at,
            "tenant": tenant,
            "data": data,
        }
        return msgspec.json.encode(doc)


def outgoing(src: str, raw_fields: str) -> list[Outgoing]:
    """The webhook events of one handed-over audit entry (its id and its fields as JSON)."""
    fields = _fields.decode(raw_fields)
    out = []
    for index, line in enumerate(fields.get("e", "").split("\n")):
        if not line:
            continue
        event = _line.decode(line)
        made = _one(event, fields)
        if made is None:
            continue
        kind, data, address_field = made
        out.append(
            Outgoing(
                id=f"evt_{src.replace('-', '_')}_{index}",
                type=kind,
                created_at=str(event.get("at", "")),
                member=fields.get("m", ""),
                notification_id=fields.get("n", ""),
                data=data,
                address_field=address_field,
                address=fields.get("p", ""),
            )
        )
    return out


def _one(event: dict[str, Any], fields: dict[str, str]) -> tuple[str, dict[str, Any], str | None] | None:
    kind = str(event.get("type", ""))
    masked = fields.get("a", "")
    if kind in _NOTIFICATION_TYPES or kind == "receipt":
        if kind == "receipt":
            status = str(event.get("status", ""))
            if status not in ("delivered", "undelivered"):
                return None
            webhook_type = f"notification.{status}"
        else:
            webhook_type = _NOTIFICATION_TYPES[kind]
            status = str(event.get("status") or kind)
        reasons = []
        if event.get("reason"):
            reasons = [{"code": event["reason"], "detail": event.get("detail") or ""}]
        data = {
            "notification_id": fields.get("n", ""),
            "status": status,
            "channel": fields.get("c", "") or event.get("channel", ""),
            "to": masked,
            "reasons": reasons,
        }
        for name in ("provider", "provider_code"):
            if event.get(name):
                data[name] = event[name]
        return webhook_type, data, None
    if kind in ("opt_out", "opt_in"):
        data = {
            "address": masked,
            "brand": event.get("brand"),
            "channel": event.get("channel"),
            "source": event.get("source") or ("consent" if kind == "opt_in" else ""),
        }
        return ("optout.created" if kind == "opt_out" else "optout.removed"), data, "address"
    if kind == "reply":
        data = {
            "from": masked,
            "text": event.get("text", ""),
            "brand": event.get("brand"),
            "intent": event.get("intent", "other"),
            "action": event.get("action", "none"),
        }
        return "reply.received", data, "from"
    if kind == "click":
        data = {
            "notification_id": fields.get("n", ""),
            "channel": fields.get("c", ""),
            "to": masked,
            "url": event.get("url"),
            "first": bool(event.get("first")),
        }
        return "link.clicked", data, "to"
    if kind == "series":
        change = str(event.get("change", ""))
        data = {
            "series_id": event.get("series_id") or fields.get("n", ""),
            "to": masked,
            **{
                k: event[k]
                for k in ("definition", "step", "status", "notification_id", "reasons", "exit_type")
                if event.get(k) is not None
            },
        }
        return _SERIES_TYPES.get(change, f"series.{change}"), data, "to"
    return None


_SERIES_TYPES = {"params": "series.updated"}
