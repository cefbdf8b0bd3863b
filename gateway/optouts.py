"""The opt-out store: per member (keyed hash of the address), entries scoped by brand and channel."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any

import msgspec
import redis.asyncio as aioredis

from gateway import keys
from gateway.recipients import Members, mask_address
from gateway.timeutil import rfc3339, system_clock

SOURCES = ("sms_reply", "api", "import", "email_link")


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


def _change(entry: dict[str, Any]) -> dict[str, Any]:
    # The change log is for auditors: the address masked, never plain.
    return {"change": "opt_out", **entry, "address": mask_address(entry["address"])}


def scope(brand: str | None, channel: str | None) -> str:
    """The hash field of an entry: ``brand|channel``, ``*`` for any."""
    return f"{brand or '*'}|{channel or '*'}"


class OptOuts:
    """Read and write opt-out entries. Entries never expire; every change is logged."""

    def __init__(self, redis: aioredis.Redis, members: Members) -> None:
        self.redis = redis
        self.members = members

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
    ) -> bool:
        """Opt the address out for the scope; False if that entry already existed (nothing changed)."""
        if source not in SOURCES:
            raise ValueError(f"source must be one of {', '.join(SOURCES)}")
        entry = _entry(address, brand, channel, source, reason, by)
        member = self.members.of(address)
        added = bool(
            await self.redis.hsetnx(
                keys.optouts(tenant, member), scope(brand, channel), msgspec.json.encode(entry)
            )
        )
        if added:
            await self._log(tenant, member, _change(entry))
        return added

    async def add_many(
        self, tenant: str, rows: Sequence[tuple[str, str | None, str | None]], *, source: str, by: str = ""
    ) -> tuple[int, int]:
        """Opt many (address, brand, channel) out in two round trips; (imported, duplicates)."""
        if not rows:
            return 0, 0
        entries = [(self.members.of(a), scope(b, c), _entry(a, b, c, source, "", by)) for a, b, c in rows]
        async with self.redis.pipeline(transaction=False) as pipe:
            for member, field, entry in entries:
                pipe.hsetnx(keys.optouts(tenant, member), field, msgspec.json.encode(entry))
            added = await pipe.execute()
        async with self.redis.pipeline(transaction=False) as pipe:
            for (member, _, entry), was_added in zip(entries, added, strict=True):
                if was_added:
                    pipe.rpush(keys.optout_log(tenant, member), msgspec.json.encode(_change(entry)))
            await pipe.execute()
        imported = sum(1 for a in added if a)
        return imported, len(rows) - imported

    async def export(self, tenant: str) -> AsyncIterator[dict[str, Any]]:
        """Every entry of the tenant, a SCAN at a time (flat memory)."""
        cursor: int = 0
        while True:
            cursor, page = await self.redis.scan(cursor, match=keys.optouts(tenant, "*"), count=1000)
            if page:
                async with self.redis.pipeline(transaction=False) as pipe:
                    for key in page:
                        pipe.hgetall(key)
                    for entries in await pipe.execute():
                        for raw in entries.values():
                            yield msgspec.json.decode(raw)
            if cursor == 0:
                return

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
        removed = bool(await self.redis.hdel(keys.optouts(tenant, member), scope(brand, channel)))
        if removed:
            change = {
                "change": "opt_in",
                "address": mask_address(address),
                "brand": brand,
                "channel": channel,
                "at": rfc3339(system_clock()),
                "consent_evidence": evidence,
                "by": by,
            }
            await self._log(tenant, member, change)
        return removed

    async def entries(self, tenant: str, address: str) -> list[dict[str, Any]]:
        """Every entry of the address."""
        raw = await self.redis.hgetall(keys.optouts(tenant, self.members.of(address)))
        return [msgspec.json.decode(v) for v in raw.values()]

    async def history(self, tenant: str, address: str) -> list[dict[str, Any]]:
        """Every change of the address's opt-outs, oldest first."""
        raw = await self.redis.lrange(keys.optout_log(tenant, self.members.of(address)), 0, -1)
        return [msgspec.json.decode(v) for v in raw]

    async def _log(self, tenant: str, member: str, change: dict[str, Any]) -> None:
        # Kept for the auditors; the audit log (issue 6) will take these over.
        await self.redis.rpush(keys.optout_log(tenant, member), msgspec.json.encode(change))
