"""Metrics read from Redis at scrape time: every API replica reports the same shared truth.

Queue depth and the age of each queue's oldest job, dead letters waiting, provider circuits and
the audit events not yet in the audit store. The scrape handler takes a snapshot (one pipelined
round trip plus a SCAN for circuits) and the collector turns the latest snapshot into families.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import redis.asyncio as aioredis
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from gateway.models import CHANNELS
from gateway.state import keys
from gateway.timeutil import system_clock


@dataclass
class Snapshot:
    """What Redis said at the last scrape."""

    depth: dict[str, int] = field(default_factory=dict)
    oldest_age: dict[str, float] = field(default_factory=dict)
    dead_letters: int = 0
    circuits: dict[str, str] = field(default_factory=dict)
    audit_backlog: int = 0
    webhook_backlog: dict[str, int] = field(default_factory=dict)  # endpoint id -> deliveries waiting
    webhook_outbox: int = 0
    ok: bool = False


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


async def take(redis: aioredis.Redis, queue: aioredis.Redis | None = None) -> Snapshot:
    """Read everything the collector reports; ``queue``: rq's Redis when it is not the state's."""
    snap = Snapshot()
    queues = [keys.queue_name(c) for c in CHANNELS]
    tenants = sorted(_text(t) for t in await redis.smembers(keys.tenants()))
    rq_redis = redis if queue is None else queue
    async with rq_redis.pipeline(transaction=False) as pipe:
        for q in queues:
            pipe.llen(f"rq:queue:{q}")
            pipe.lindex(f"rq:queue:{q}", 0)
        if queue is None:
            for t in tenants:
                pipe.zcard(keys.dead_letters(t))
                pipe.xlen(keys.audit(t))
        raw = await pipe.execute()
    if queue is not None:
        async with redis.pipeline(transaction=False) as pipe:
            for t in tenants:
                pipe.zcard(keys.dead_letters(t))
                pipe.xlen(keys.audit(t))
            raw += await pipe.execute()
    heads: dict[str, str] = {}
    for i, q in enumerate(queues):
        snap.depth[q] = int(raw[2 * i])
        if raw[2 * i + 1] is not None:
            heads[q] = _text(raw[2 * i + 1])
    rest = raw[2 * len(queues) :]
    snap.dead_letters = sum(int(rest[2 * i]) for i in range(len(tenants)))
    snap.audit_backlog = sum(int(rest[2 * i + 1]) for i in range(len(tenants)))
    now = system_clock()
    if heads:
        async with rq_redis.pipeline(transaction=False) as pipe:
            for job_id in heads.values():
                pipe.hget(f"rq:job:{job_id}", "enqueued_at")
            stamps = await pipe.execute()
        for q, stamp in zip(heads, stamps, strict=True):
            if stamp:
                try:
                    at = datetime.fromisoformat(_text(stamp).replace("Z", "+00:00")).timestamp()
                except ValueError:
                    continue
                snap.oldest_age[q] = max(0.0, now - at)
    breakers = [k async for k in redis.scan_iter(match=f"{keys.PREFIX}provider:*:breaker", count=1000)]
    if breakers:
        async with redis.pipeline(transaction=False) as pipe:
            for key in breakers:
                pipe.hget(key, "state")
            states = await pipe.execute()
        for key, state in zip(breakers, states, strict=True):
            name = _text(key)
            provider = name[name.index("{") + 1 : name.index("}")]
            snap.circuits[provider] = _text(state) if state else "closed"
    await _webhooks(redis, snap)
    snap.ok = True
    return snap


async def _webhooks(redis: aioredis.Redis, snap: Snapshot) -> None:
    """Deliveries waiting on each endpoint's lanes, and events not yet fanned out."""
    tenants = sorted(_text(t) for t in await redis.smembers(keys.webhook_tenants()))
    if not tenants:
        return
    async with redis.pipeline(transaction=False) as pipe:
        for t in tenants:
            pipe.zrange(keys.webhook_due(t), 0, -1)
            pipe.xlen(keys.webhook_outbox(t))
        raw = await pipe.execute()
    lanes = [_text(lane) for i in range(len(tenants)) for lane in raw[2 * i]]
    snap.webhook_outbox = sum(int(raw[2 * i + 1]) for i in range(len(tenants)))
    if not lanes:
        return
    async with redis.pipeline(transaction=False) as pipe:
        for lane in lanes:
            pipe.llen(lane)
        lengths = await pipe.execute()
    for lane, n in zip(lanes, lengths, strict=True):
        endpoint = lane.rsplit(":", 2)[-2]  # ...:wh:q:<endpoint>:<lane>
        snap.webhook_backlog[endpoint] = snap.webhook_backlog.get(endpoint, 0) + int(n)


class StateCollector(Collector):
    """Families from the latest snapshot (nothing when Redis did not answer: no stale numbers)."""

    def __init__(self) -> None:
        self.snapshot = Snapshot()

    def collect(self) -> Iterable[GaugeMetricFamily]:
        """The gauges."""
        snap = self.snapshot
        if not snap.ok:
            return
        depth = GaugeMetricFamily(
            "tidings_queue_depth", "Jobs waiting in each channel queue.", labels=["queue"]
        )
        age = GaugeMetricFamily(
            "tidings_queue_oldest_age_seconds",
            "Age of the oldest job waiting in each channel queue (0 when empty).",
            labels=["queue"],
        )
        for q, n in sorted(snap.depth.items()):
            depth.add_metric([q], float(n))
            age.add_metric([q], snap.oldest_age.get(q, 0.0))
        yield depth
        yield age
        yield GaugeMetricFamily(
            "tidings_dead_letters",
            "Notifications on the dead-letter lists, all tenants.",
            value=snap.dead_letters,
        )
        circuit = GaugeMetricFamily(
            "tidings_provider_circuit_open",
            "1 while a provider's circuit is open or half-open (probing), else 0; shared by every worker.",
            labels=["provider"],
        )
        for provider, state in sorted(snap.circuits.items()):
            circuit.add_metric([provider], 1.0 if state in ("open", "half_open") else 0.0)
        yield circuit
        yield GaugeMetricFamily(
            "tidings_audit_backlog",
            "Audit events in Redis not yet moved into the audit store.",
            value=snap.audit_backlog,
        )
        backlog = GaugeMetricFamily(
            "tidings_webhook_backlog",
            "Webhook deliveries waiting for each endpoint (by endpoint id; no URL, no tenant).",
            labels=["endpoint"],
        )
        for endpoint, n in sorted(snap.webhook_backlog.items()):
            backlog.add_metric([endpoint], float(n))
        yield backlog
        yield GaugeMetricFamily(
            "tidings_webhook_outbox",
            "Webhook events handed over from the audit log and not yet fanned out to endpoints.",
            value=snap.webhook_outbox,
        )
