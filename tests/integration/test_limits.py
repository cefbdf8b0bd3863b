"""Limits: a key over its request rate gets 429 with Retry-After; other keys go on."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from gateway.api.auth import RateLimiter
from tests.conftest import Stack, make_key, points_expiry

pytestmark = pytest.mark.integration


def test_the_limiter_allows_the_burst_then_the_rate() -> None:
    limiter = RateLimiter(per_second=10, burst=3)
    assert [limiter.check("k", 100.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    wait = limiter.check("k", 100.0)
    assert wait == pytest.approx(0.1)
    assert limiter.check("other", 100.0) == 0.0
    assert limiter.check("k", 100.1) == 0.0  # one more token after 1/rate
    assert limiter.check("k", 100.1) > 0
    assert RateLimiter(per_second=0, burst=1).check("k", 1.0) == 0.0  # off


def test_a_key_over_its_rate_gets_429_with_retry_after_and_others_do_not(
    stack_factory: Callable[..., Stack],
) -> None:
    stack = stack_factory(rate_limit_per_second=2, rate_limit_burst=5)
    make_key(stack.redis_url, "second-key-0123456789", "acme", ["notify"])
    with stack.client() as c, stack.client("second-key-0123456789") as other:
        answers = [c.post("/v1/notify", json=points_expiry(f"1380013{i:04d}")) for i in range(8)]
        codes = [a.status_code for a in answers]
        assert codes[:5] == [202] * 5 and 429 in codes[5:], codes
        limited = next(a for a in answers if a.status_code == 429)
        assert limited.json()["code"] == "rate_limited" and int(limited.headers["retry-after"]) >= 1
        # Nothing was accepted for the refused requests.
        assert sum(1 for a in answers if a.status_code == 202) == codes.count(202)
        assert other.post("/v1/notify", json=points_expiry("13900139000")).status_code == 202
        time.sleep(1.1)
        assert c.post("/v1/notify", json=points_expiry("13800139999")).status_code == 202


def test_held_notifications_are_bounded_per_tenant_and_channel(stack_factory: Callable[..., Stack]) -> None:
    stack = stack_factory(max_held_per_channel=3)
    later = {"send_at": (datetime.now(UTC) + timedelta(days=20)).isoformat()}  # inside the 35-day horizon
    with stack.client() as c:
        held = [c.post("/v1/notify", json=points_expiry(f"1380014{i:04d}", **later)) for i in range(3)]
        assert [r.json()["status"] for r in held] == ["scheduled"] * 3
        full = c.post("/v1/notify", json=points_expiry("13800149999", **later))
        assert full.status_code == 429 and full.json()["code"] == "too_many_scheduled"
        assert int(full.headers["retry-after"]) >= 1
        # Nothing of the refused one was stored or counted; messages due now still go.
        assert c.post("/v1/notify", json=points_expiry("13800149999")).json()["status"] == "queued"
        batch = c.post(
            "/v1/notify/batch",
            json={"defaults": {**points_expiry(), **later}, "items": [{"to": {"phone": "13800148888"}}]},
        ).json()["results"]
        assert batch[0]["status"] == "rejected" and batch[0]["reasons"][0]["code"] == "too_many_scheduled"
