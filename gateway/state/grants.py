"""The WeChat grant ledger: the one-time subscribe grants each member gave, per mini-program template.

A member taps "allow" in the mini program (``wx.requestSubscribeMessage``) and the caller records it
(``POST /v1/wechat/grants``); each grant lets exactly one subscribe message through. A send spends
one in the delivery step, right after the claim and before the provider is called
(``lua/wechat_spend.lua``), at most once per notification; none left: the notification fails with
``no_wechat_grant`` and its fallback channels are tried. WeChat's 43101 (the member refused, or the
grant is used up on WeChat's side) sets the balance to 0, so the next send falls back without
calling WeChat. The ledger is keyed by the member (the keyed hash of the openid), never the openid.
"""

from __future__ import annotations

from collections.abc import Sequence

import redis.asyncio as aioredis

from gateway.state import keys, scripts
from gateway.state.record import text_of
from gateway.state.redisdb import is_cluster

MAX_BALANCE = 1000  # per member and template: a mini program asks once per tap, so more is a bug


class GrantLedger:
    """Record, spend, cancel and read a tenant's members' WeChat grants."""

    def __init__(self, redis: aioredis.Redis) -> None:
        self.redis = redis
        self._grant = redis.register_script(scripts.WECHAT_GRANT)
        self._spend = redis.register_script(scripts.WECHAT_SPEND)

    async def add(
        self, tenant: str, member: str, masked: str, template_id: str, count: int, event: str
    ) -> int | None:
        """Record ``count`` grants with their audit ``event``; the new balance, or None when it would
        pass ``MAX_BALANCE``."""
        after = int(
            await self._grant(
                keys=[keys.wechat_grants(tenant, member), keys.audit(tenant)],
                args=[template_id, count, MAX_BALANCE, member, masked, event],
            )
        )
        return None if after < 0 else after

    async def balance(self, tenant: str, member: str, template_id: str) -> int:
        """How many grants are left."""
        raw = await self.redis.hget(keys.wechat_grants(tenant, member), template_id)
        return max(0, int(text_of(raw) or 0))

    async def spend(self, tenant: str, items: Sequence[tuple[str, str, str]]) -> tuple[set[str], int]:
        """Spend one grant for each (notification id, member, template id) that holds none yet: the ids
        left without one, and how many grants were spent now (a retry keeps the one it holds).

        One script per notification, pipelined: each is atomic on its own ledger entry, so two
        messages racing for a member's last grant cannot both have it.
        """
        if not items:
            return set(), 0
        if is_cluster(self.redis):  # redis-py's cluster pipeline refuses scripts: one call each
            answers = [
                await self._spend(
                    keys=[keys.notification(tenant, ntf_id), keys.wechat_grants(tenant, member)],
                    args=[template_id],
                )
                for ntf_id, member, template_id in items
            ]
        else:
            async with self.redis.pipeline(transaction=False) as pipe:
                for ntf_id, member, template_id in items:
                    await self._spend(
                        keys=[keys.notification(tenant, ntf_id), keys.wechat_grants(tenant, member)],
                        args=[template_id],
                        client=pipe,
                    )
                answers = await pipe.execute()
        missing = {ntf_id for (ntf_id, _, _), ok in zip(items, answers, strict=True) if int(ok) == 0}
        return missing, sum(1 for ok in answers if int(ok) == 2)

    async def gone(self, tenant: str, pairs: Sequence[tuple[str, str]]) -> None:
        """WeChat said 43101 for these (member, template id): no grant of theirs is left."""
        if not pairs:
            return
        async with self.redis.pipeline(transaction=False) as pipe:
            for member, template_id in pairs:
                pipe.hset(keys.wechat_grants(tenant, member), template_id, 0)
            await pipe.execute()
