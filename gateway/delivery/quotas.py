"""Provider quotas (``channels/quotas.py``) counted in Redis just before the call.

``take`` runs ``provider_quota.lua`` once for a chunk of messages: the ones with room are counted and
may go; the others wait (or fail, as the provider's ``over_quota`` says) with reason
``provider_limit``, and the provider never sees them. ``give_back`` uncounts messages the provider
did not take (a transient failure), so a retry is not charged twice. Scope values hold the number:
the key names only their keyed hash.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Sequence
from typing import Any

import msgspec

from channels.base import Message
from channels.routing import Provider
from gateway.state import keys, scripts


class Quotas:
    """Provider quotas in Redis."""

    def __init__(self, redis: Any, hmac_key: str) -> None:
        self.redis = redis
        self._key = hmac_key.encode()
        self._take = redis.register_script(scripts.PROVIDER_QUOTA)

    def _keys(self, provider: Provider, m: Message) -> list[tuple[str, Any]]:
        out = []
        for q in provider.quotas:
            if q.applies(m):
                scope = hmac.new(self._key, q.scope_of(m).encode(), hashlib.sha256).hexdigest()[:32]
                out.append((keys.provider_quota(provider.name, q.name, scope), q))
        return out

    async def take(self, provider: Provider, messages: Sequence[Message]) -> list[float]:
        """Per message: 0.0 when it may go now (it is counted), else seconds until it may."""
        ks: list[str] = []
        argv: list[Any] = [int(time.time() * 1000), msgspec.json.encode([m.reference for m in messages])]
        for m in messages:
            scoped = self._keys(provider, m)
            argv.append(len(scoped))
            for key, q in scoped:
                ks.append(key)
                argv.append(len(q.windows))
                for w in q.windows:
                    argv += [w.count, w.seconds * 1000]
        if not ks:
            return [0.0] * len(messages)
        waits = await self._take(keys=ks, args=argv)
        return [int(w) / 1000 for w in waits]

    async def give_back(self, provider: Provider, messages: Sequence[Message]) -> None:
        """Uncount messages the provider did not take."""
        async with self.redis.pipeline(transaction=False) as pipe:
            n = 0
            for m in messages:
                for key, _ in self._keys(provider, m):
                    pipe.zrem(key, m.reference)
                    n += 1
            if n:
                await pipe.execute()

    async def with_room(
        self,
        provider: Provider,
        offered: Sequence[tuple[int, Message]],
        over: dict[int, tuple[float, str]],
        probe: bool,
    ) -> list[int]:
        """Which offered messages (by their index) the provider's quotas have room for, counted now;
        each other one's wait is noted in ``over`` (the shortest across providers). A probe is the first
        with room: one over a limit would use a circuit's probe up without a send."""
        for chunk in [[pair] for pair in offered] if probe else [list(offered)]:
            waits = await self.take(provider, [m for _, m in chunk])
            for (i, _), wait in zip(chunk, waits, strict=True):
                if wait and (i not in over or wait < over[i][0]):
                    over[i] = (wait, provider.over_quota)
            room = [i for (i, _), wait in zip(chunk, waits, strict=True) if not wait]
            if room:
                return room
        return []
