"""Stripe-style idempotency: one notification per key, however many concurrent duplicates."""

from __future__ import annotations

import asyncio
import time

import httpx
import msgspec
import pytest
import redis

from gateway.state import keys
from tests.conftest import API_KEY, TENANT, Stack, points_expiry, wait_for

pytestmark = pytest.mark.integration


def test_hundred_concurrent_duplicates_make_one_notification(stack: Stack) -> None:
    body = points_expiry()

    async def fire() -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=100)
        async with httpx.AsyncClient(base_url=stack.api_url, limits=limits, timeout=20) as c:
            headers = {"Authorization": f"Bearer {API_KEY}", "Idempotency-Key": "ledger-7781-expiry-30d"}
            return await asyncio.gather(
                *(c.post("/v1/notify", json=body, headers=headers) for _ in range(100))
            )

    responses = asyncio.run(fire())
    assert {r.status_code for r in responses} == {202}
    ids = {r.json()["id"] for r in responses}
    assert len(ids) == 1
    replayed = [r for r in responses if r.headers.get("idempotent-replayed") == "true"]
    assert len(replayed) == 99

    wait_for(lambda: len(stack.messages()) >= 1, timeout=3)
    time.sleep(0.5)  # give a wrongly doubled send the time to show up
    assert len(stack.messages()) == 1

    with stack.client() as c:
        other = c.post(
            "/v1/notify",
            json=points_expiry(params={"name": "王先生", "points": 1, "days": 1}),
            headers={"Idempotency-Key": "ledger-7781-expiry-30d"},
        )
        assert other.status_code == 422
        assert other.headers["content-type"].startswith("application/problem+json")
        assert other.json()["code"] == "idempotency_key_reused"
        # The key in the body works the same as the header.
        again = c.post("/v1/notify", json={**body, "idempotency_key": "ledger-7781-expiry-30d"})
        assert again.status_code == 202 and again.json()["id"] in ids
        assert again.headers["idempotent-replayed"] == "true"


def test_keys_are_scoped_to_the_tenant(stack: Stack) -> None:
    from gateway.api.auth import SCOPES
    from tests.conftest import make_key

    make_key(stack.redis_url, "other-tenant-key", "globex", list(SCOPES))
    headers = {"Idempotency-Key": "same-key"}
    with stack.client() as a, stack.client("other-tenant-key") as b:
        first = a.post("/v1/notify", json=points_expiry(), headers=headers).json()["id"]
        second = b.post("/v1/notify", json=points_expiry(), headers=headers).json()["id"]
        assert first != second
        # Tenant B cannot see tenant A's notification.
        assert b.get(f"/v1/notifications/{first}").status_code == 404


def test_batch_replay_and_in_progress(stack: Stack) -> None:
    payload = {
        "defaults": points_expiry(),
        "items": [{"to": {"phone": "13812340001"}}, {"to": {"phone": "13812340002"}}],
    }
    with stack.client() as c:
        first = c.post("/v1/notify/batch", json=payload, headers={"Idempotency-Key": "batch-1"})
        again = c.post("/v1/notify/batch", json=payload, headers={"Idempotency-Key": "batch-1"})
        assert first.status_code == again.status_code == 200
        assert again.json() == first.json() and again.headers["idempotent-replayed"] == "true"
        changed = {**payload, "items": payload["items"][:1]}
        assert (
            c.post("/v1/notify/batch", json=changed, headers={"Idempotency-Key": "batch-1"}).json()["code"]
            == "idempotency_key_reused"
        )
        # A reservation still pending (as while a first request runs) answers 409 with Retry-After.
        fp_probe = c.post("/v1/notify/batch", json=payload, headers={"Idempotency-Key": "batch-probe"})
        assert fp_probe.status_code == 200
        r = redis.Redis.from_url(stack.redis_url)
        stored = msgspec.json.decode(r.get(keys.idempotency(TENANT, "batch:batch-probe")))
        r.set(
            keys.idempotency(TENANT, "batch:batch-2"),
            msgspec.json.encode({"fp": stored["fp"], "state": "pending"}),
        )
        busy = c.post("/v1/notify/batch", json=payload, headers={"Idempotency-Key": "batch-2"})
        assert busy.status_code == 409 and busy.json()["code"] == "idempotency_in_progress"
        assert busy.headers["retry-after"] == "1"


def test_a_batch_sent_again_after_failing_part_way_accepts_nothing_twice(stack: Stack) -> None:
    # A batch whose accept failed part-way (Redis went away after some items were written) answers
    # 503 and releases its Idempotency-Key, so the caller's retry runs the items again. Each item
    # without a key of its own is keyed by the batch's key and its index (batch-item:{key}:{index},
    # shown as its idempotency_key): the retry answers the items
    # already accepted from their records. Here the release is done by hand after a whole first try.
    items = [{"to": {"phone": "13812350001"}}, {"to": {"phone": "13812350002"}, "idempotency_key": "own-2"}]
    payload = {"defaults": points_expiry(), "items": [*items, {"to": {"phone": "13812350003"}}]}
    headers = {"Idempotency-Key": "batch-part-way"}
    r = redis.Redis.from_url(stack.redis_url)
    with stack.client() as c:
        first = c.post("/v1/notify/batch", json=payload, headers=headers).json()["results"]
        assert [x["status"] for x in first] == ["queued"] * 3
        assert r.delete(keys.idempotency(TENANT, "batch:batch-part-way")) == 1
        again = c.post("/v1/notify/batch", json=payload, headers=headers)
        assert again.status_code == 200 and "idempotent-replayed" not in again.headers
        assert [x["id"] for x in again.json()["results"]] == [x["id"] for x in first]
        # The item keys are the batch's: another batch key, or a changed item, is a request of its own.
        assert r.exists(keys.idempotency(TENANT, "batch-item:batch-part-way:0"))
        assert r.exists(keys.idempotency(TENANT, "own-2"))
        assert not r.exists(keys.idempotency(TENANT, "batch-item:batch-part-way:1"))
        assert c.get(f"/v1/notifications/{first[0]['id']}").json()["idempotency_key"] == (
            "batch-item:batch-part-way:0"
        )
        # A batch keyed like an item of another batch is a batch of its own.
        other = c.post("/v1/notify/batch", json=payload, headers={"Idempotency-Key": "batch-part-way:0"})
        assert other.status_code == 200 and {x["status"] for x in other.json()["results"]} == {"queued"}
        too_long = c.post("/v1/notify/batch", json=payload, headers={"Idempotency-Key": "k" * 256})
        assert too_long.status_code == 422 and too_long.json()["code"] == "validation_error"
        r.delete(keys.idempotency(TENANT, "batch:batch-part-way"))
        changed = {**payload, "items": [items[0], items[1], {"to": {"phone": "13812350004"}}]}
        third = c.post("/v1/notify/batch", json=changed, headers=headers).json()["results"]
        assert [x["id"] for x in third[:2]] == [x["id"] for x in first[:2]]
        assert third[2]["status"] == "rejected"
        assert third[2]["reasons"][0]["code"] == "idempotency_key_reused"
    # Each member once from the first batch; the batch of its own sent the keyless items again (the
    # item with its own key was answered from its record).
    wait_for(lambda: len(stack.messages()) >= 5, timeout=10)
    time.sleep(0.5)
    assert sorted(m["to"] for m in stack.messages()) == sorted(
        ["+8613812350001", "+8613812350002", "+8613812350003", "+8613812350001", "+8613812350003"]
    )
