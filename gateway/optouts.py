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
    """Read and write opt-out entries. Entries never expire."""

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
        key = keys.optouts(tenant, self.members.of(address))
        return bool(await self.redis.hsetnx(key, scope(brand, channel), msgspec.json.encode(entry)))

    async def remove(
        self, tenant: str, address: str, *, brand: str | None = None, channel: str | None = None
    ) -> bool:
        """Opt back in for exactly that scope; False if there was no such entry."""
        key = keys.optouts(tenant, self.members.of(address))
        return bool(await self.redis.hdel(key, scope(brand, channel)))

    async def entries(self, tenant: str, address: str) -> list[dict[str, Any]]:
        """Every entry of the address."""
        raw = await self.redis.hgetall(keys.optouts(tenant, self.members.of(address)))
        return [msgspec.json.decode(v) for v in raw.values()]
