"""Reconcile a tenant's opt-outs in Redis with its audit log (``tidings optouts reconcile``).

Redis holds the live opt-outs; every change to them is also an ``opt_out`` or ``opt_in`` audit event.
After Redis is restored from an old backup, or loses a write in a failover, the log still knows
opt-outs Redis lacks. Reconcile replays the tenant's ``opt_out``/``opt_in`` events (for each member
and scope the latest one wins) and writes back every opt-out whose latest event is an opt-out and
that Redis lacks, in the shape ``OptOuts.add`` writes (``since`` = the event's time, plus
``restored_by: reconcile``; the address is ``""``: the log keeps only its keyed hash and masked
form, and the hash is what Redis is keyed by). No ``opt_out`` event is written for a restored entry
(the log has it already): one ``optouts_reconciled`` event records the run's counts.

What it leaves alone, and counts: entries Redis has that the log has no event for (``only_in_redis``),
and entries Redis has whose latest event is an opt-in (``conflicts``). A conflict is not removed: an
opt-out held too long costs reach, an opt-in applied wrongly sends to someone who said stop, and
the entry may be a Redis backup's stale copy or a newer opt-out whose event is in flight. The report
names them (member hash and scope) for a person to decide, through the API or the console.

Events are read a page at a time: first the tenant's audit stream (the entries the consumer has not
stored yet; it deletes an entry once stored), then the store. Each event's stream id orders it
(the store keeps it as the event id), so an event seen in both counts once and the latest wins
whatever was read first. Memory holds one small record per (member, scope) ever opted out or in,
not the events. Redis is read and written in pipelines of ``BATCH``.

Not covered: an opt-in made while reconcile runs, for an opt-out Redis lacked, can be undone by the
restore (the opt-out comes back; run it again later and it is reported as a conflict).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

import msgspec
import redis.asyncio as aioredis

from gateway import events
from gateway.audit import stream as audit
from gateway.audit.store import AuditStore
from gateway.optouts.store import scope as scope_of
from gateway.state import keys
from gateway.timeutil import rfc3339

KINDS = ("opt_out", "opt_in")
PAGE = 5000  # events per read of the store
BATCH = 1000  # Redis commands per pipeline, stream entries per XRANGE
SHOWN_CONFLICTS = 20  # conflicts the report names; it counts the rest
_decode = msgspec.json.Decoder()


class NoEvents(Exception):
    """The tenant has no event at all, neither stored nor in its stream (a mistyped tenant?)."""


@dataclass
class Latest:
    """The latest opt-out or opt-in of one (member, scope)."""

    order: tuple[int, int, int]
    kind: str
    at: str
    brand: str | None
    channel: str | None
    source: str
    reason: str
    by: str


@dataclass
class Report:
    """What one run found and did."""

    tenant: str
    dry_run: bool
    events_read: int = 0
    from_stream: int = 0
    members: int = 0
    restored: int = 0
    already_present: int = 0
    only_in_redis: int = 0
    conflicts: int = 0
    conflict_list: list[dict[str, str]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def order_of(event_id: str) -> tuple[int, int, int]:
    """``<ms>-<seq>.<index>`` (a stream id and the event's place in the entry) as a sortable tuple."""
    stream_id, _, index = event_id.partition(".")
    ms, _, seq = stream_id.partition("-")
    try:
        return int(ms), int(seq or 0), int(index or 0)
    except ValueError:
        return 0, 0, 0


def latest_of(member: str, event_id: str, at_ms: int, body: str) -> Latest | None:
    """The record of one opt_out/opt_in event (None when it names no member)."""
    if not member:
        return None
    ev: dict[str, Any] = _decode.decode(body)
    return Latest(
        order=order_of(event_id),
        kind=str(ev.get("type")),
        at=str(ev.get("at") or rfc3339(at_ms / 1000) or ""),
        brand=ev.get("brand"),
        channel=ev.get("channel"),
        source=str(ev.get("source") or "api"),
        reason=str(ev.get("reason") or ""),
        by=str(ev.get("by") or ""),
    )


def restored_entry(latest: Latest) -> bytes:
    """The entry ``OptOuts.add`` writes, from the event (the address is not in the log)."""
    return msgspec.json.encode(
        {
            "address": "",
            "brand": latest.brand,
            "channel": latest.channel,
            "since": latest.at,
            "source": latest.source,
            "reason": latest.reason,
            "by": latest.by,
            "restored_by": "reconcile",
        }
    )


def _text(value: bytes | str | None) -> str:
    return value.decode() if isinstance(value, bytes) else (value or "")


def _batches(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    batch: list[Any] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


class Reconciler:
    """One tenant's opt-outs: the audit log against Redis."""

    def __init__(self, redis: aioredis.Redis, store: AuditStore, tenant: str) -> None:
        self.redis = redis
        self.store = store
        self.tenant = tenant
        self.latest: dict[tuple[str, str], Latest] = {}

    async def run(self, *, dry_run: bool = False, by: str = "cli") -> Report:
        """Read the log, compare, restore (unless ``dry_run``), record the run; the report."""
        report = Report(self.tenant, dry_run)
        stream_len = int(await self.redis.xlen(keys.audit(self.tenant)))
        if self.store.head(self.tenant)[0] == 0 and stream_len == 0:
            raise NoEvents(f"tenant {self.tenant!r} has no audit events (stored or in its stream)")
        report.from_stream = await self._read_stream()
        report.events_read = report.from_stream + self._read_store()
        report.members = len({member for member, _ in self.latest})
        await self._compare(report, dry_run)
        await self._count_only_in_redis(report)
        if not dry_run:
            await audit.record(
                self.redis,
                self.tenant,
                events.encode(
                    events.OptOutsReconciled(
                        at=events.at(),
                        events_read=report.events_read,
                        members=report.members,
                        restored=report.restored,
                        already_present=report.already_present,
                        only_in_redis=report.only_in_redis,
                        conflicts=report.conflicts,
                        by=by or None,
                    )
                ),
            )
        return report

    def _take(self, member: str, event_id: str, at_ms: int, body: str) -> None:
        latest = latest_of(member, event_id, at_ms, body)
        if latest is None:
            return
        key = (member, scope_of(latest.brand, latest.channel))
        known = self.latest.get(key)
        if known is None or latest.order > known.order:
            self.latest[key] = latest

    async def _read_stream(self) -> int:
        """The events the consumer has not stored yet, a page of entries at a time."""
        read, start = 0, "-"
        while True:
            page = await self.redis.xrange(keys.audit(self.tenant), min=start, max="+", count=BATCH)
            if not page:
                return read
            for entry_id, raw in page:
                fields = {_text(k): _text(v) for k, v in (raw or {}).items()}
                for row in audit.rows_of(self.tenant, _text(entry_id), fields):
                    if row.type in KINDS:
                        self._take(row.member, row.event_id, row.at_ms, row.body)
                        read += 1
            start = "(" + _text(page[-1][0])

    def _read_store(self) -> int:
        """The stored opt_out/opt_in events in chain order, ``PAGE`` at a time."""
        read, after = 0, 0
        while True:
            rows = self.store.search(self.tenant, types=KINDS, after_seq=after, limit=PAGE)
            if not rows:
                return read
            for row in rows:
                self._take(row.member, row.event_id, row.at_ms, row.body)
            read += len(rows)
            after = rows[-1].seq

    async def _compare(self, report: Report, dry_run: bool) -> None:
        """Each (member, scope) against Redis: restore, already present, or a conflict."""
        for batch in _batches(self.latest.items(), BATCH):
            async with self.redis.pipeline(transaction=False) as pipe:
                for (member, scope), _ in batch:
                    pipe.hexists(keys.optouts(self.tenant, member), scope)
                present = await pipe.execute()
            missing = []
            for ((member, scope), latest), here in zip(batch, present, strict=True):
                if latest.kind == "opt_out" and here:
                    report.already_present += 1
                elif latest.kind == "opt_out":
                    missing.append((member, scope, latest))
                elif here:
                    report.conflicts += 1
                    if len(report.conflict_list) < SHOWN_CONFLICTS:
                        report.conflict_list.append(
                            {"member": member, "scope": scope, "opted_in_at": latest.at}
                        )
            if dry_run:
                report.restored += len(missing)
                continue
            async with self.redis.pipeline(transaction=False) as pipe:
                for member, scope, latest in missing:
                    # HSETNX: an opt-out written since the check is kept as it is.
                    pipe.hsetnx(keys.optouts(self.tenant, member), scope, restored_entry(latest))
                written = await pipe.execute()
            report.restored += sum(1 for w in written if w)
            report.already_present += sum(1 for w in written if not w)

    async def _count_only_in_redis(self, report: Report) -> None:
        """Entries Redis has that the log has no event for, a SCAN page at a time."""
        cursor: int = 0
        while True:
            cursor, page = await self.redis.scan(cursor, match=keys.optouts(self.tenant, "*"), count=BATCH)
            if page:
                prefix = keys.optouts(self.tenant, "")
                async with self.redis.pipeline(transaction=False) as pipe:
                    for key in page:
                        pipe.hkeys(key)
                    scopes = await pipe.execute()
                for key, fields in zip(page, scopes, strict=True):
                    member = _text(key)[len(prefix) :]
                    report.only_in_redis += sum(1 for f in fields if (member, _text(f)) not in self.latest)
            if cursor == 0:
                return
