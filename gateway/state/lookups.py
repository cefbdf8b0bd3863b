"""Small look-ups beside the notification store: provider message ids, dead push tokens, dead letters."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from typing import Any

import redis.asyncio as aioredis

from gateway.state import keys
from gateway.state.record import text_of as _s
from gateway.state.scriptpipe import ScriptPipe


class Lookups:
    """Mixed into ``Store``: reads and writes that need no script."""

    redis: aioredis.Redis
    pipe: ScriptPipe | None
    record_ttl: int

    async def map_provider_ids(self, tenant: str, pairs: Iterable[tuple[str, str, str]]) -> None:
        """Remember (provider, provider_message_id) -> notification, for receipts without our reference."""
        if self.pipe is not None:
            ttl = str(self.record_ttl)
            await self.pipe.commands(
                [
                    ("SET", keys.provider_message(provider, pmid), f"{tenant}|{ntf_id}", "EX", ttl)
                    for provider, pmid, ntf_id in pairs
                ]
            )
            return
        async with self.redis.pipeline(transaction=False) as pipe:
            for provider, pmid, ntf_id in pairs:
                pipe.set(keys.provider_message(provider, pmid), f"{tenant}|{ntf_id}", ex=self.record_ttl)
            await pipe.execute()

    async def hmget_many(self, hashes: Sequence[str], fields: Sequence[str]) -> list[list[Any]]:
        """The same fields of many hashes, in one round trip."""
        if self.pipe is not None:
            return await self.pipe.commands([("HMGET", h, *fields) for h in hashes])
        async with self.redis.pipeline(transaction=False) as pipe:
            for h in hashes:
                pipe.hmget(h, *fields)
            return list(await pipe.execute())

    async def mark_dead_tokens(self, tenant: str, tokens: Iterable[str]) -> None:
        """Remember push tokens a provider called unregistered (for 180 days)."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for token in tokens:
                pipe.set(keys.dead_token(tenant, _token_hash(token)), "1", ex=180 * 86_400)
            await pipe.execute()

    async def is_dead_token(self, tenant: str, token: str) -> bool:
        """Whether a provider said this push token is unregistered."""
        return bool(await self.redis.exists(keys.dead_token(tenant, _token_hash(token))))

    async def lookup_provider_id(self, provider: str, pmid: str) -> tuple[str, str] | None:
        """(tenant, id) of a provider message id."""
        raw = await self.redis.get(keys.provider_message(provider, pmid))
        if raw is None:
            return None
        parts = _s(raw).partition("|")
        return parts[0], parts[2]

    async def dead_letters(self, tenant: str) -> list[tuple[str, float]]:
        """(id, time) of every dead letter of a tenant."""
        raw: list[Any] = await self.redis.zrange(keys.dead_letters(tenant), 0, -1, withscores=True)
        return [(_s(pair[0]), float(pair[1])) for pair in raw]

    async def tenants(self) -> list[str]:
        """Every tenant that has an API key."""
        return sorted(_s(t) for t in await self.redis.smembers(keys.tenants()))


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()
