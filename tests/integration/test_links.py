"""Tracked links: each message its own short URL, a redirect that counts people, not robots."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest

from tests.conftest import Stack, wait_for

pytestmark = pytest.mark.integration
BRAND = "星耀商城"
TARGET = "https://m.xingyao.example.cn/points"


def countdown(phone: str, **extra: Any) -> dict[str, Any]:
    return {
        "to": {"phone": phone},
        "channel": "sms",
        "brand": BRAND,
        "template": "points_expiry_countdown",
        "params": {"name": "李女士", "points": 1200, "days": 3},
        "metadata": {"campaign": "2026-12-countdown"},
        **extra,
    }


def tap(stack: Stack, to: str, **extra: Any) -> dict[str, Any]:
    r = httpx.post(f"{stack.sim_url}/taps", json={"to": to, **extra}, timeout=10)
    assert r.status_code == 200, r.text
    answer: dict[str, Any] = r.json()
    return answer


def clicks(stack: Stack, ntf_id: str) -> list[dict[str, Any]]:
    with stack.client() as c:
        events: list[dict[str, Any]] = c.get(f"/v1/notifications/{ntf_id}").json()["events"]
    return [e for e in events if e["type"] == "click"]


def test_a_tracked_link_redirects_and_counts_people_once(stack: Stack) -> None:
    with stack.client() as c:
        sent = c.post("/v1/notify", json=countdown("13812349001"))
        assert sent.status_code == 202, sent.text
    ntf_id = sent.json()["id"]
    (msg,) = wait_for(lambda: stack.messages("+8613812349001"), timeout=10)
    short = re.findall(r"http://\S+/l/[0-9A-Za-z]{8}", msg["text"])
    assert len(short) == 1 and short[0].startswith(stack.api_url) and TARGET not in msg["text"]
    # Segments are counted on the text as sent, with its short link.
    assert sent.json()["segments"] == 1

    prefetch = tap(stack, "+8613812349001", method="HEAD")
    robot = tap(stack, "+8613812349001", user_agent="facebookexternalhit/1.1")
    assert prefetch["status"] == robot["status"] == 302 and robot["location"] == TARGET
    assert clicks(stack, ntf_id) == []

    first = tap(stack, "+8613812349001")
    second = tap(stack, "+8613812349001")  # the same member again a moment later
    assert first == {"url": short[0], "status": 302, "location": TARGET} and second["status"] == 302
    got = wait_for(lambda: clicks(stack, ntf_id), timeout=5)
    assert len(got) == 1 and got[0]["first"] is True and got[0]["url"] == TARGET

    unknown = httpx.get(f"{stack.api_url}/l/ZZZZZZZZ", follow_redirects=False, timeout=5)
    assert unknown.status_code == 404 and unknown.json()["code"] == "not_found"
    assert httpx.get(f"{stack.api_url}/l/not-a-code", timeout=5).status_code == 404
    counts = {
        k: v
        for k, v in stack_link(stack, short[0]).items()
        if k in ("raw", "counted", "repeats", "bot", "head")
    }
    assert counts == {"raw": "4", "counted": "1", "repeats": "1", "bot": "1", "head": "1"}


def stack_link(stack: Stack, short: str) -> dict[str, str]:
    import redis

    client = redis.Redis.from_url(stack.redis_url, decode_responses=True)
    try:
        found: dict[str, str] = client.hgetall(f"tid:link:{short.rsplit('/', 1)[1]}")  # type: ignore[assignment]
    finally:
        client.close()
    return found


def test_track_links_shortens_every_url_in_content_and_each_message_gets_its_own(stack: Stack) -> None:
    body = {
        "to": {"phone": "13812349002"},
        "channel": "sms",
        "brand": BRAND,
        "content": {
            "text": f"双十二会员日,积分兑换:{TARGET}?from=sms ,详情 https://xingyao.example.cn/rules"
        },
        "track_links": True,
    }
    with stack.client() as c:
        assert c.post("/v1/notify", json=body).status_code == 202
        assert c.post("/v1/notify", json={**body, "to": {"phone": "13812349003"}}).status_code == 202
        bad = c.post(
            "/v1/notify",
            json={
                **body,
                "template": "points_expiry_countdown",
                "content": None,
                "params": {"name": "x", "points": 1, "days": 1},
                "channel": "fax",
            },
        )
        assert bad.status_code == 422
    one = wait_for(lambda: stack.messages("+8613812349002"), timeout=10)[0]["text"]
    two = wait_for(lambda: stack.messages("+8613812349003"), timeout=10)[0]["text"]
    first_links = re.findall(r"/l/([0-9A-Za-z]{8})", one)
    assert len(first_links) == 2 and "https://" not in one
    assert set(first_links).isdisjoint(re.findall(r"/l/([0-9A-Za-z]{8})", two))
    assert tap(stack, "+8613812349002", link=1)["location"] == "https://xingyao.example.cn/rules"
    assert tap(stack, "+8613812349003")["location"] == f"{TARGET}?from=sms"
