"""Deliveries: one event addressed to one endpoint, waiting on the endpoint's lane for its member.

Queued in the caller's transaction (the dispatcher's fan-out, a test event, a manual retry); the
dispatcher takes them from the lanes. Each keeps its attempts for the endpoint's delivery log.
"""

from __future__ import annotations

import time
import zlib
from typing import Any

import redis.asyncio as aioredis

from gateway.ids import new_id
from gateway.state import keys
from gateway.state.record import text_of
from gateway.timeutil import rfc3339
from gateway.webhooks.endpoints import Endpoint
from gateway.webhooks.payloads import Outgoing

KEEP_SECONDS = 7 * 86_400  # a delivery and the endpoint's log of them are kept a week


def lane_of(member: str, lanes: int) -> int:
    """The lane of a member (the same every time)."""
    return zlib.crc32(member.encode()) % lanes


def queue_delivery(
    pipe: Any,
    tenant: str,
    endpoint: Endpoint,
    event: Outgoing,
    now: float,
    lanes: int,
    extra: dict[str, Any] | None = None,
) -> str:
    """Add one delivery of an event to an endpoint's lane (in the caller's transaction); its id."""
    delivery = new_id("dlv")
    lane = keys.webhook_lane(tenant, endpoint.id, lane_of(event.member or event.id, lanes))
    record = keys.webhook_delivery(tenant, delivery)
    pipe.hset(
        record,
        mapping={
            "id": delivery,
            "endpoint": endpoint.id,
            "event_id": event.id,
            "type": event.type,
            "body": event.body(tenant, include_address=endpoint.include_addresses, extra=extra),
            "lane": lane,
            "status": "pending",
            "attempts": 0,
            "created_at": now,
            "next_attempt_at": now,
        },
    )
    pipe.expire(record, KEEP_SECONDS)
    requeue(pipe, tenant, lane, delivery, now)
    log_key = keys.webhook_log(tenant, endpoint.id)
    pipe.lpush(log_key, delivery)
    pipe.ltrim(log_key, 0, 999)
    pipe.expire(log_key, KEEP_SECONDS)
    return delivery


def requeue(pipe: Any, tenant: str, lane: str, delivery: str, now: float) -> None:
    """Put a delivery at the end of its lane and make the lane due if it was idle."""
    pipe.rpush(lane, delivery)
    pipe.zadd(keys.webhook_due(tenant), {lane: now}, nx=True)


def _time(value: str) -> str | None:
    try:
        return rfc3339(float(value)) if value else None
    except ValueError:
        return None


def view(record: dict[str, str]) -> dict[str, Any]:
    """A delivery as the API shows it (its body is the event: no address beyond what was sent)."""
    status = record.get("last_status", "")
    return {
        "id": record.get("id", ""),
        "event_id": record.get("event_id", ""),
        "type": record.get("type", ""),
        "status": record.get("status", ""),
        "attempts": int(record.get("attempts", "0") or 0),
        "last_status": int(status) if status.isdigit() else None,
        "last_error": record.get("last_error") or None,
        "latency_ms": float(record["latency_ms"]) if record.get("latency_ms") else None,
        "created_at": _time(record.get("created_at", "")),
        "last_attempt_at": _time(record.get("last_attempt_at", "")),
        "next_attempt_at": _time(record.get("next_attempt_at", "")),
    }


async def recent(redis: aioredis.Redis, tenant: str, endpoint: str, limit: int) -> list[dict[str, Any]]:
    """The endpoint's latest deliveries, newest first."""
    ids = await redis.lrange(keys.webhook_log(tenant, endpoint), 0, limit - 1)
    async with redis.pipeline(transaction=False) as pipe:
        for delivery in ids:
            pipe.hgetall(keys.webhook_delivery(tenant, text_of(delivery)))
        found = await pipe.execute()
    return [view({text_of(k): text_of(v) for k, v in r.items()}) for r in found if r]


async def get(redis: aioredis.Redis, tenant: str, delivery: str) -> dict[str, str] | None:
    """One delivery's record, or None."""
    raw = await redis.hgetall(keys.webhook_delivery(tenant, delivery))
    return {text_of(k): text_of(v) for k, v in raw.items()} if raw else None


async def retry(redis: aioredis.Redis, tenant: str, record: dict[str, str]) -> None:
    """Send a failed delivery again, behind what its lane holds now."""
    now = time.time()
    async with redis.pipeline(transaction=True) as pipe:
        pipe.hset(
            keys.webhook_delivery(tenant, record["id"]),
            mapping={"status": "pending", "attempts": 0, "next_attempt_at": now},
        )
        requeue(pipe, tenant, record["lane"], record["id"], now)
        await pipe.execute()
