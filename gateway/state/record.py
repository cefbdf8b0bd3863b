"""The stored notification as one typed record, decoded from its Redis hash in one place.

A notification lives in one hash: the fields the Lua scripts read or change (status, attempts,
times, member, cap key, provider ids) each on their own, and everything static in one JSON document
(``doc``: address, content, params, fallback chain...). ``decode_record`` merges both into a
``Notification``; nothing else reads the hash's strings.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import msgspec

from gateway.models import Channel, Status

_doc = msgspec.json.Decoder(dict[str, Any])
_reasons = msgspec.json.Decoder(list[dict[str, Any]])


class Notification(msgspec.Struct, kw_only=True, frozen=True):
    """One notification as stored (times are epoch seconds; absent text is '')."""

    id: str
    tenant: str = ""
    channel: Channel
    status: Status
    category: str = "marketing"
    brand: str = ""
    address: str = ""  # E.164, email or push token: never shown unmasked
    member: str = ""  # keyed hash of the address
    masked: str = ""
    user_id: str = ""
    timezone: str = ""
    locale: str = ""
    template: str = ""
    params: dict[str, Any] = {}
    rendered: dict[str, Any] = {}
    segments: int | None = None
    encoding: str = ""
    not_before: float = 0.0
    send_at: float | None = None
    expires_at: float | None = None
    created_at: float = 0.0
    updated_at: float = 0.0
    sent_at: float | None = None
    lease_until: float | None = None
    attempts: int = 0
    reasons: list[dict[str, Any]] = []
    fallback: list[Channel] = []
    to: dict[str, Any] = {}
    content: dict[str, Any] | None = None
    metadata: dict[str, Any] = {}
    idempotency_key: str = ""
    cap_key: str = ""
    provider: str = ""
    provider_message_id: str = ""
    error_code: str = ""
    error_detail: str = ""
    receipt_code: str = ""
    experiment: str = ""  # the experiment and the member's variant of it
    variant: str = ""
    series: str = ""  # the series this notification is a step of, and the step's number
    series_step: str = ""
    sealed: str = ""  # a verification's sealed code, until its send is over (gateway/verify/codes.py)


def decode_record(raw: Mapping[Any, Any]) -> Notification:
    """A notification from its hash (``HGETALL``, bytes or str): the live fields over the document."""
    return _from_fields({text_of(k): text_of(v) for k, v in raw.items()})


def record_of_reply(flat: Sequence[bytes]) -> Notification:
    """A notification from a script's ``HGETALL`` reply (field, value, ... as bytes)."""
    return _from_fields(dict(zip(map(bytes.decode, flat[::2]), map(bytes.decode, flat[1::2]), strict=True)))


def _from_fields(fields: dict[str, str]) -> Notification:
    doc = fields.pop("doc", "")
    merged: dict[str, Any] = _doc.decode(doc) if doc else {}
    reasons = fields.pop("reasons", "")
    merged.update(fields)
    merged["reasons"] = _reasons.decode(reasons) if reasons else []
    # '' stands for "none" in the hash and the document: let the defaults say so.
    return msgspec.convert({k: v for k, v in merged.items() if v != ""}, Notification, strict=False)


def text_of(value: Any) -> str:
    """A Redis reply as text (bytes decoded, None as '')."""
    return value.decode() if isinstance(value, bytes) else "" if value is None else str(value)
