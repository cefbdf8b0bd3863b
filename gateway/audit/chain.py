"""The audit chain: each event's hash covers the previous one's, so any change to history shows.

Each stored event carries ``prev_hash`` (the previous event's hash, ``GENESIS`` for a tenant's first)
and ``hash = SHA-256(prev_hash + canonical form)``, where the canonical form holds the event's position
(``seq``) and every stored field. Changing, removing, inserting or reordering a stored event breaks the
chain at that event; removing the newest ones is caught by the head kept beside the table and by the
anchor the consumer keeps in Redis.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import msgspec

from gateway.audit.stream import AuditRow

GENESIS = "0" * 64

_canonical = msgspec.json.Encoder()

COLUMNS = (
    "tenant, seq, event_id, at_ms, type, notification_id, channel, member, address, body, prev_hash, hash"
)


class StoredEvent(msgspec.Struct, frozen=True):
    """One stored event with its place in the chain."""

    seq: int
    event_id: str
    at_ms: int
    type: str
    notification_id: str
    channel: str
    member: str
    address: str
    body: str
    prev_hash: str
    hash: str


def chain_hash(prev_hash: str, tenant: str, seq: int, row: AuditRow | StoredEvent) -> str:
    """The hash of one event given the previous one's."""
    canonical = _canonical.encode(
        [
            tenant,
            seq,
            row.event_id,
            row.at_ms,
            row.type,
            row.notification_id,
            row.channel,
            row.member,
            row.address,
            row.body,
        ]
    )
    return hashlib.sha256(prev_hash.encode() + canonical).hexdigest()


def row_values(row: AuditRow, seq: int, prev_hash: str, digest: str) -> tuple[Any, ...]:
    """A row's values in ``COLUMNS`` order."""
    return (
        row.tenant,
        seq,
        row.event_id,
        row.at_ms,
        row.type,
        row.notification_id,
        row.channel,
        row.member,
        row.address,
        row.body,
        prev_hash,
        digest,
    )


class ChainWalk:
    """Follows a tenant's chain event by event from a known (seq, hash); stops at the first broken link."""

    def __init__(self, tenant: str, last: int, prev: str) -> None:
        self.tenant = tenant
        self.last = last
        self.prev = prev
        self.checked = 0

    def take(self, rows: Sequence[StoredEvent]) -> dict[str, Any] | None:
        """Check the next rows in seq order: None while the chain holds, else the broken link."""
        for row in rows:
            if row.seq != self.last + 1:
                return self.broken(self.last + 1, None, "missing", f"event {self.last + 1} is missing")
            if row.prev_hash != self.prev:
                return self.broken(
                    row.seq, row.event_id, "out_of_order", "prev_hash is not the previous event's hash"
                )
            if chain_hash(self.prev, self.tenant, row.seq, row) != row.hash:
                return self.broken(
                    row.seq, row.event_id, "altered", "the event's content does not match its hash"
                )
            self.prev, self.last = row.hash, row.seq
            self.checked += 1
        return None

    def ok(self) -> dict[str, Any]:
        """The answer of a chain that holds."""
        return {"ok": True, "checked": self.checked}

    def broken(self, seq: int, event_id: str | None, code: str, detail: str) -> dict[str, Any]:
        """The answer naming the first broken link."""
        return {
            "ok": False,
            "checked": self.checked,
            "broken": {
                "tenant": self.tenant,
                "seq": seq,
                "event_id": event_id,
                "reason": code,
                "detail": detail,
            },
        }


def stored_event(row: Sequence[Any]) -> StoredEvent:
    return StoredEvent(
        seq=int(row[1]),
        event_id=row[2],
        at_ms=int(row[3]),
        type=row[4],
        notification_id=row[5],
        channel=row[6],
        member=row[7],
        address=row[8],
        body=row[9],
        prev_hash=row[10],
        hash=row[11],
    )
