"""``build_services(settings, redis_url)``: the one place a process wires its state and rules.

The API, the worker and the CLI all start from here: one Redis client, the notification store (with
the fast script pipe when asked), the policy, the tenant templates, the accept pipeline and the
opt-out store, and the series service. What only one of them needs (the API's authenticator and rate limiter, the worker's
provider router and delivery engine) they add on top.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import redis.asyncio as aioredis

from compliance.policy import Policy, load_policy
from gateway.accept.pipeline import Acceptor
from gateway.accept.tenant_templates import TenantTemplates
from gateway.optouts.store import OptOuts
from gateway.recipients import Members
from gateway.series.definitions import Definitions
from gateway.series.service import SeriesService
from gateway.settings import CLUSTER_SCHEME, Settings
from gateway.state import scripts
from gateway.state.clusterpipe import ClusterPipe
from gateway.state.redisdb import async_client
from gateway.state.scriptpipe import ScriptPipe
from gateway.state.store import Store
from gateway.verify.service import Verifications
from templates.renderer import load_catalog


@dataclass
class Core:
    """What every process shares: settings, Redis, store, policy, templates, accept and opt-outs."""

    settings: Settings
    redis: aioredis.Redis
    store: Store
    policy: Policy
    templates: TenantTemplates
    acceptor: Acceptor
    optouts: OptOuts
    members: Members
    series: SeriesService
    verifications: Verifications
    pipe: ScriptPipe | None = None
    cluster: ClusterPipe | None = None

    async def aclose(self) -> None:
        """Close the script pipes and the Redis client."""
        for pipe in (self.pipe, self.cluster):
            if pipe is not None:
                with contextlib.suppress(Exception):
                    await pipe.aclose()
        await self.redis.aclose()


def build_services(settings: Settings, redis_url: str) -> Core:
    """Wire one process (or one thread with its own event loop). Accepts and the batch script calls
    (outcomes, receipts) go through the lean script pipe, except over TLS (redis-py's then)."""
    client = async_client(redis_url)
    pipe = None
    # On a Cluster every pipelined script (the accepts too) goes through the ClusterPipe, by slot.
    cluster = ClusterPipe(redis_url) if redis_url.startswith(CLUSTER_SCHEME) else None
    if cluster is None and not redis_url.startswith("rediss://"):
        pipe = ScriptPipe(redis_url, scripts.ACCEPT)
    store = Store(
        client,
        record_ttl=settings.record_ttl_seconds,
        idempotency_ttl=settings.idempotency_ttl_seconds,
        pipe=pipe,
        max_held=settings.max_held_per_channel,
        cluster=cluster,
    )
    policy = load_policy(settings.policy_path)
    templates = TenantTemplates(client, load_catalog(), policy)
    members = Members(settings.hmac_key)
    series = SeriesService(settings, store, Definitions(client, templates), policy, members)
    acceptor = Acceptor(settings, store, templates, policy)
    return Core(
        settings=settings,
        redis=client,
        store=store,
        policy=policy,
        templates=templates,
        acceptor=acceptor,
        optouts=OptOuts(client, members, wait_ms=settings.optout_wait_ms, cluster=cluster),
        members=members,
        series=series,
        verifications=Verifications(
            client, acceptor, policy, members, settings.hmac_key, settings.default_region
        ),
        pipe=pipe,
        cluster=cluster,
    )
