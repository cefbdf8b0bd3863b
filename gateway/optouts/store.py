"""The opt-out store: per member (keyed hash of the address), entries scoped by brand and channel."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any

import msgspec
import redis.asyncio as aioredis

from gateway import events, metrics
from gateway.audit import stream as audit
from gateway.optouts.replication import ReplicatedWrites
from gateway.recipients import Members, mask_address
from gateway.state import keys, scripts
from gateway.state.clusterpipe import ClusterPipe
from gateway.state.redisdb import scan_pages
from gateway.timeutil import rfc3339, system_clock

SOURCES = ("sms_reply", "api", "import", "email_link", "complaint")


def _entry(
    address: str, brand: str | None, channel: str | None, source: str, reason: str, by: str
) -> dict[str, Any]:
    # The address is kept in the entry (live state, like a notification's) so opt-outs can be
    # exported; lookups go through the keyed hash, and views mask it.
    return {
        "address": address,
        "brand": brand,
        "channel": channel,
        "since": rfc3339(system_clock()),
        "source": source,
        "reason": reason,
        "by": by,
    }


def _opt_out_event(entry: dict[str, Any]) -> str:
    # For auditors: the address stays out (the audit row carries its keyed hash and masked form).
    # The event's time is the entry's ``since``: `tidings optouts reconcile` restores it from there.
    return events.encode(
        events.OptedOut(
            at=entry["since"],
            brand=entry["brand"],
            channel=entry["channel"],
            source=entry["source"],
            reason=entry["reason"] or None,
            by=entry["by"] or None,
        )
    )


def scope(brand: str | None, channel: str | None) -> str:
    """The hash field of an entry: ``brand|channel``, ``*`` for any."""
    return f"{brand or '*'}|{channel or '*'}"


class OptOuts:
    """Read and write opt-out entries. Entries never expire; every change goes to the audit stream.

    Every opt-out (``add``, ``add_many``) goes through ``ReplicatedWrites``: where the master has
    replicas it is acknowledged only once one holds it (``WAIT 1 wait_ms``), else a 503. Such a write
    is already on the master when it is answered 503, so the script marks it pending
    (``keys.optout_pending``) until a replica acknowledged it: the caller's retry finds the mark and
    is answered as the first attempt would have been, had it been acknowledged (a new opt-out), and
    the mark is cleared once that retry is acknowledged.
    """

    def __init__(
        self,
        redis: aioredis.Redis,
        members: Members,
        *,
        wait_ms: int = 500,
        cluster: ClusterPipe | None = None,
    ) -> None:
        self.redis = redis
        self.members = members
        self.writes = ReplicatedWrites(redis, wait_ms, cluster=cluster)
        self._add = redis.register_script(scripts.OPTOUT_ADD)
        self._remove = redis.register_script(scripts.OPTOUT_REMOVE)

    async def add(
        self,
        tenant: str,
        address: str,
        *,
        brand: str | None = None,
        channel: str | None = None,
        source: str = "api",
        reason: str = "",
        by: str = "",
        answered: tuple[str, str] | None = None,
    ) -> bool:
        """Opt the address out for the scope; False if that entry already existed (nothing changed).

        True also for an entry an earlier write left unacknowledged (503 optout_not_replicated): this
        is its retry. ``answered``: (notification id, its ``unsubscribed`` event) of the message the
        opt-out answers, added to that timeline with the opt-out, once per opt-out (not again by a
        retry whose first attempt added it), when the notification is still there."""
        if source not in SOURCES:
            raise ValueError(f"source must be one of {', '.join(SOURCES)}")
        wait = await self.writes.waits()
        entry = _entry(address, brand, channel, source, reason, by)
        call = self._add_call(tenant, entry, wait, answered)
        (result,) = await self.writes.run(self._add, [call], wait=wait)
        if wait and result:
            await self._acknowledged(tenant, [entry])
        if result:
            metrics.OPTOUTS.labels(source).inc()
        return bool(result)

    async def add_many(
        self, tenant: str, rows: Sequence[tuple[str, str | None, str | None]], *, source: str, by: str = ""
    ) -> tuple[int, int]:
        """Opt many (address, brand, channel) out in two round trips (one wait; a third clears the
        pending marks where it waited); (imported, duplicates), a row an unacknowledged earlier write
        left counting as imported."""
        if not rows:
            return 0, 0
        wait = await self.writes.waits()
        entries = [_entry(a, b, c, source, "", by) for a, b, c in rows]
        calls = [self._add_call(tenant, e, wait) for e in entries]
        added = await self.writes.run(self._add, calls, wait=wait)
        if wait:
            await self._acknowledged(tenant, [e for e, a in zip(entries, added, strict=True) if a])
        imported = sum(1 for a in added if a)
        metrics.OPTOUTS.labels(source).inc(imported)
        return imported, len(rows) - imported

    def _add_call(
        self, tenant: str, entry: dict[str, Any], wait: bool, answered: tuple[str, str] | None = None
    ) -> tuple[list[str], list[str | bytes]]:
        """KEYS and ARGV of the script that adds one entry and its audit event (lua/optout_add.lua)."""
        address = entry["address"]
        member = self.members.of(address)
        ks = [keys.optouts(tenant, member), keys.audit(tenant), keys.optout_pending(tenant, member)]
        note = ""
        if answered is not None:
            ks += [keys.notification(tenant, answered[0]), keys.events(tenant, answered[0])]
            note = answered[1]
        return ks, [
            scope(entry["brand"], entry["channel"]),
            msgspec.json.encode(entry),
            member,
            mask_address(address),
            _opt_out_event(entry),
            address,
            str(self.writes.wait_ms if wait else 0),
            note,
        ]

    async def _acknowledged(self, tenant: str, entries: Sequence[dict[str, Any]]) -> None:
        """A replica holds these writes: nothing of them is pending any more (the mark the script set)."""
        if not entries:
            return
        async with self.redis.pipeline(transaction=False) as pipe:
            for e in entries:
                pipe.hdel(
                    keys.optout_pending(tenant, self.members.of(e["address"])),
                    scope(e["brand"], e["channel"]),
                )
            await pipe.execute()

    async def export(
        self, tenant: str, *, addresses: bool, via: str, by: str = ""
    ) -> AsyncIterator[dict[str, Any]]:
        """Every entry of the tenant, a SCAN at a time (flat memory); the address masked unless
        ``addresses``. The export itself is an audit event, recorded before the first row."""
        await audit.record(
            self.redis,
            tenant,
            events.encode(
                events.OptOutsExported(at=events.at(), include_addresses=addresses, via=via, by=by or None)
            ),
        )
        async for entry in self._entries(tenant):
            if not addresses:
                entry["address"] = mask_address(str(entry.get("address", "")))
            yield entry

    async def _entries(self, tenant: str) -> AsyncIterator[dict[str, Any]]:
        async for page in scan_pages(self.redis, keys.optouts(tenant, "*"), 1000):
            async with self.redis.pipeline(transaction=False) as pipe:
                for key in page:
                    pipe.hgetall(key)
                for entries in await pipe.execute():
                    for raw in entries.values():
                        yield msgspec.json.decode(raw)

    async def remove(
        self,
        tenant: str,
        address: str,
        *,
        brand: str | None = None,
        channel: str | None = None,
        evidence: str,
        by: str = "",
    ) -> bool:
        """Opt back in for exactly that scope, with the member's consent evidence; False if there was no entry."""
        if not evidence.strip():
            raise ValueError("opting back in needs consent evidence")
        member = self.members.of(address)
        ev = events.encode(
            events.OptedIn(
                at=events.at(), brand=brand, channel=channel, consent_evidence=evidence, by=by or None
            )
        )
        removed = await self._remove(
            keys=[keys.optouts(tenant, member), keys.audit(tenant), keys.optout_pending(tenant, member)],
            args=[scope(brand, channel), member, mask_address(address), ev, address],
        )
        return bool(removed)

    async def reply(
        self,
        tenant: str,
        address: str,
        *,
        text: str,
        intent: str,
        action: str,
        provider: str,
        brand: str | None,
    ) -> None:
        """Record a member's reply (every one, whatever it asked for) as an audit event."""
        ev = events.ReplyReceived(
            at=events.at(), text=text[:500], intent=intent, action=action, provider=provider, brand=brand
        )
        await audit.record(
            self.redis,
            tenant,
            events.encode(ev),
            member=self.members.of(address),
            masked=mask_address(address),
            channel="sms",
            address=address,
        )

    async def entries(self, tenant: str, address: str) -> list[dict[str, Any]]:
        """Every entry of the address, oldest first."""
        return await self.entries_of(tenant, self.members.of(address))

    async def entries_of(self, tenant: str, member: str) -> list[dict[str, Any]]:
        """Every entry of a member named by its keyed hash (the console's pages), oldest first."""
        raw = await self.redis.hgetall(keys.optouts(tenant, member))
        return sorted((msgspec.json.decode(v) for v in raw.values()), key=lambda e: str(e.get("since", "")))
