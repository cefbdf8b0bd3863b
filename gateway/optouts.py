"""The opt-out store: per member (keyed hash of the address), entries scoped by brand and channel."""

from __future__ import annotations

from typing import Any

import msgspec
import redis.asyncio as aioredis

from gateway import keys
from gateway.recipients import Members
from gateway.timeutil import rfc3339, system_clock

SOURCES = ("sms_reply", "api", "import", "email_link")


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
        entry = {
            "brand": brand,
            "channel": channel,
            "since": rfc3339(system_clock()),
            "source": source,
            "reason": reason,
            "by": by,
        }
        member = self.members.of(address)
        added = bool(
            await self.redis.hsetnx(
                keys.optouts(tenant, member), scope(brand, channel), msgspec.json.encode(entry)
            )
        )
        if added:
            await self._log(tenant, member, {"change": "opt_out", **entry})
        return added

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
