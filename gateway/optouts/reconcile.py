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

Events are read a page at a time: the tenant's audit stream (the entries the consumer has not
stored yet; it deletes an entry once stored), then the store. Each event's stream id orders it (the
store keeps it as the event id): an event in both is read once, and the latest wins whatever was
read first. The first pass keeps one int per (member, scope) ever opted out or in (its latest
event's place, negative for an opt-in), never the events; a second pass reads the log again for the
bodies of the opt-outs to restore, and stops once it has them all. Redis is read and written in
pipelines of ``BATCH``. The restores are opt-out writes like any other: they go through
``ReplicatedWrites``, so where the master has replicas each pipeline is followed by ``WAIT 1
<wait_ms>``, and a batch no replica acknowledged in time stops the run (``NotReplicated``; running it
again is harmless). Restoring a million opt-outs took 56 s and 341 MB (max RSS) on the
development machine, the second run 35 s and 286 MB (``python -m bench.reconcile``).

Not covered: an opt-out whose event the retention has pruned (``tidings audit prune``, at least 150
days) is not in the log and cannot be restored; an opt-in made while reconcile runs, for an opt-out
Redis lacked, can be undone by the restore (the opt-out comes back; a later run reports it as a
conflict).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

import msgspec
import redis.asyncio as aioredis
from redis.asyncio.client import Pipeline

from gateway import events
from gateway.audit import stream as audit
from gateway.audit.store import AuditStore
from gateway.optouts.replication import OptOutNotReplicated, ReplicatedWrites
from gateway.optouts.store import scope as scope_of
from gateway.state import keys
from gateway.state.redisdb import scan_pages
from gateway.timeutil import rfc3339

KINDS = ("opt_out", "opt_in")
PAGE = 5000  # events per read of the store
BATCH = 1000  # Redis commands per pipeline, stream entries per XRANGE
SHOWN_CONFLICTS = 20  # conflicts the report names; it counts the rest
_decode = msgspec.json.Decoder()


class NoEvents(Exception):
    """The tenant has no event at all, neither stored nor in its stream (a mistyped tenant?)."""


class NotReplicated(Exception):
    """No replica acknowledged a batch of restored opt-outs in time: the run stops there."""

    def __init__(self, report: Report, batch: int, wait_ms: int) -> None:
        super().__init__(
            f"no replica acknowledged the restored opt-outs within {wait_ms} ms (TIDINGS_OPTOUT_WAIT_MS);"
            f" stopped after {report.restored:,} restored and acknowledged, with a batch of {batch:,}"
            " written to the master but not acknowledged (the audit log still holds them). Run it again"
            " once a replica is connected: restoring is idempotent (a batch the master kept then counts"
            " as already present), and this run recorded no optouts_reconciled event"
        )
        self.report = report


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


class Seen(msgspec.Struct, frozen=True):
    """One opt_out/opt_in event as both passes read it."""

    member: str
    scope: str
    order: int
    event: dict[str, Any]
    at_ms: int
    in_stream: bool


def order_of(event_id: str) -> int:
    """``<ms>-<seq>.<index>`` (a stream id and the event's place in its entry) as one sortable int (> 0)."""
    stream_id, _, index = event_id.partition(".")
    ms, _, seq = stream_id.partition("-")
    try:
        return (int(ms) << 40) + (int(seq or 0) << 16) + int(index or 0) + 1
    except ValueError:
        return 1


def restored_entry(event: dict[str, Any], at_ms: int) -> bytes:
    """The entry ``OptOuts.add`` writes, from its ``opt_out`` event (the address is not in the log)."""
    return msgspec.json.encode(
        {
            "address": "",
            "brand": event.get("brand"),
            "channel": event.get("channel"),
            "since": str(event.get("at") or rfc3339(at_ms / 1000) or ""),
            "source": str(event.get("source") or "api"),
            "reason": str(event.get("reason") or ""),
            "by": str(event.get("by") or ""),
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


def _members(latest: dict[str, int]) -> int:
    """How many members the keys name (sorted, so no second set of a million strings)."""
    count, last = 0, ""
    for key in sorted(latest):
        member = key.partition("|")[0]
        if member != last:
            count, last = count + 1, member
    return count


class Reconciler:
    """One tenant's opt-outs: the audit log against Redis."""

    def __init__(self, redis: aioredis.Redis, store: AuditStore, tenant: str, *, wait_ms: int = 500) -> None:
        self.redis = redis
        self.store = store
        self.tenant = tenant
        # Restores are opt-out writes: where the master has replicas, each batch is acknowledged only
        # once one holds it (WAIT), as OptOuts.add's are.
        self.writes = ReplicatedWrites(redis, wait_ms)
        # "member|brand|channel" -> the place of its latest event, negative for an opt-in.
        self.latest: dict[str, int] = {}

    async def run(self, *, dry_run: bool = False, by: str = "cli") -> Report:
        """Read the log, compare, restore (unless ``dry_run``), record the run; the report."""
        report = Report(self.tenant, dry_run)
        stream_len = int(await self.redis.xlen(keys.audit(self.tenant)))
        if self.store.head(self.tenant)[0] == 0 and stream_len == 0:
            raise NoEvents(f"tenant {self.tenant!r} has no audit events (stored or in its stream)")
        async for seen in self._events():
            report.events_read += 1
            report.from_stream += seen.in_stream
            key = f"{seen.member}|{seen.scope}"
            if seen.order > abs(self.latest.get(key, 0)):
                self.latest[key] = seen.order if seen.event.get("type") == "opt_out" else -seen.order
        report.members = _members(self.latest)
        missing = await self._compare(report)
        if dry_run:
            report.restored = len(missing)
        else:
            await self._restore(report, missing)
        await self._count_only_in_redis(report)
        if not dry_run:
            summary = events.OptOutsReconciled(
                at=events.at(),
                events_read=report.events_read,
                members=report.members,
                restored=report.restored,
                already_present=report.already_present,
                only_in_redis=report.only_in_redis,
                conflicts=report.conflicts,
                by=by or None,
            )
            await audit.record(self.redis, self.tenant, events.encode(summary))
        return report

    async def _events(self) -> AsyncIterator[Seen]:
        """The tenant's opt_out/opt_in events: its stream a page of entries at a time (what the
        consumer has not stored yet), then the store ``PAGE`` at a time, in chain order."""
        in_stream: set[str] = set()  # what the consumer stored but has not deleted yet is read once
        start = "-"
        while page := await self.redis.xrange(keys.audit(self.tenant), min=start, max="+", count=BATCH):
            for entry_id, raw in page:
                fields = {_text(k): _text(v) for k, v in (raw or {}).items()}
                for row in audit.rows_of(self.tenant, _text(entry_id), fields):
                    if row.type in KINDS and row.member:
                        in_stream.add(row.event_id)
                        yield self._seen(row.member, row.event_id, row.at_ms, row.body, True)
            start = "(" + _text(page[-1][0])
        after = 0
        while rows := self.store.search(self.tenant, types=KINDS, after_seq=after, limit=PAGE):
            for r in rows:
                if r.member and r.event_id not in in_stream:
                    yield self._seen(r.member, r.event_id, r.at_ms, r.body, False)
            after = rows[-1].seq

    @staticmethod
    def _seen(member: str, event_id: str, at_ms: int, body: str, in_stream: bool) -> Seen:
        event: dict[str, Any] = _decode.decode(body)
        scope = scope_of(event.get("brand"), event.get("channel"))
        return Seen(member, scope, order_of(event_id), event, at_ms, in_stream)

    async def _compare(self, report: Report) -> set[str]:
        """Each (member, scope) against Redis: already present, a conflict, or missing (returned)."""
        missing: set[str] = set()
        for batch in _batches(self.latest.items(), BATCH):
            async with self.redis.pipeline(transaction=False) as pipe:
                for key, _ in batch:
                    member, _, scope = key.partition("|")
                    pipe.hexists(keys.optouts(self.tenant, member), scope)
                present = await pipe.execute()
            for (key, order), here in zip(batch, present, strict=True):
                if order > 0 and here:
                    report.already_present += 1
                elif order > 0:
                    missing.add(key)
                elif here:
                    report.conflicts += 1
                    if len(report.conflict_list) < SHOWN_CONFLICTS:
                        member, _, scope = key.partition("|")
                        at = rfc3339(((-order - 1) >> 40) / 1000) or ""  # the opt-in's stream time
                        report.conflict_list.append({"member": member, "scope": scope, "opted_in_at": at})
        return missing

    async def _restore(self, report: Report, missing: set[str]) -> None:
        """The second pass: each missing opt-out from its latest event, in pipelines of ``BATCH``."""
        pending: list[tuple[str, str, bytes]] = []
        async for seen in self._events():
            if not missing:
                break
            key = f"{seen.member}|{seen.scope}"
            if key in missing and self.latest[key] == seen.order:
                missing.discard(key)
                pending.append((seen.member, seen.scope, restored_entry(seen.event, seen.at_ms)))
                if len(pending) >= BATCH:
                    await self._write(report, pending)
                    pending = []
        await self._write(report, pending)

    async def _write(self, report: Report, pending: list[tuple[str, str, bytes]]) -> None:
        if not pending:
            return

        async def queue(pipe: Pipeline) -> None:
            for member, scope, entry in pending:
                # HSETNX: an opt-out written since the check is kept as it is.
                pipe.hsetnx(keys.optouts(self.tenant, member), scope, entry)

        try:
            written = await self.writes.pipeline(queue)
        except OptOutNotReplicated:
            raise NotReplicated(report, len(pending), self.writes.wait_ms) from None
        report.restored += sum(1 for w in written if w)
        report.already_present += sum(1 for w in written if not w)

    async def _count_only_in_redis(self, report: Report) -> None:
        """Entries Redis has that the log has no event for, a SCAN page at a time."""
        prefix = keys.optouts(self.tenant, "")
        async for page in scan_pages(self.redis, prefix + "*", BATCH):
            async with self.redis.pipeline(transaction=False) as pipe:
                for key in page:
                    pipe.hkeys(key)
                scopes = await pipe.execute()
            for key, fields in zip(page, scopes, strict=True):
                member = _text(key)[len(prefix) :]
                report.only_in_redis += sum(1 for f in fields if f"{member}|{_text(f)}" not in self.latest)
