"""Reminder series: definitions, planning, release by the worker, exits honoured at the last moment."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
import redis

from gateway.timeutil import set_clock
from tests.conftest import Stack, wait_for

pytestmark = pytest.mark.integration
SH = ZoneInfo("Asia/Shanghai")
BRAND = "星耀商城"


def quick_definition(*offsets: str, template: str = "points_expiry", window: str = "any") -> dict[str, Any]:
    """A tenant definition with steps seconds apart (the README's walk-through)."""
    return {
        "category": "marketing",
        "description": "快速演示",
        "exit_on": ["points_redeemed"],
        "steps": [
            {"name": f"s{i}", "offset": off, "template": template, "channel": "sms", "window": window}
            for i, off in enumerate(offsets, 1)
        ],
    }


def start(c: httpx.Client, phone: str, definition: str, anchor: datetime, **extra: Any) -> httpx.Response:
    body = {
        "definition": definition,
        "to": {"phone": phone},
        "brand": BRAND,
        "anchor_at": anchor.isoformat(),
        "params": {"name": "李女士", "points": 1200, "days": 3},
        **extra,
    }
    return c.post("/v1/series", json=body)


def redeem(c: httpx.Client, phone: str) -> list[str]:
    r = c.post("/v1/events", json={"type": "points_redeemed", "to": {"phone": phone}, "brand": BRAND})
    assert r.status_code == 200, r.text
    ended: list[str] = r.json()["ended"]
    return ended


def test_a_series_runs_its_steps_and_stops_on_a_redemption(stack: Stack) -> None:
    with stack.client() as c:
        r = c.put("/v1/series-definitions/quick", json=quick_definition("-PT9S", "-PT6S", "-PT3S"))
        assert r.status_code == 201, r.text
        assert [s["offset"] for s in r.json()["steps"]] == ["-PT9S", "-PT6S", "-PT3S"]
        anchor = datetime.now(SH) + timedelta(seconds=10)
        started = start(c, "13812348001", "quick", anchor, key="ledger-1")
        assert started.status_code == 201, started.text
        series = started.json()
        assert series["status"] == "active" and [s["status"] for s in series["steps"]] == ["pending"] * 3
        assert series["to"] == "+86138****8001"
        first = wait_for(lambda: stack.messages("+8613812348001"), timeout=10)
        assert len(first) == 1
        assert redeem(c, "13812348001") == [series["id"]]
        time.sleep(7)  # past the other two steps' times
        assert len(stack.messages("+8613812348001")) == 1
        view = c.get(f"/v1/series/{series['id']}").json()
        assert view["status"] == "exited" and view["end_reason"] == "exited"
        assert [s["status"] for s in view["steps"]] == ["sent", "cancelled", "cancelled"]
        assert view["steps"][0]["notification_id"].startswith("ntf_")
        assert view["steps"][1]["reasons"][0]["code"] == "exited"


def test_starting_is_idempotent_by_key(stack: Stack) -> None:
    with stack.client() as c:
        assert c.put("/v1/series-definitions/quick", json=quick_definition("-P2D", "-P1D")).status_code == 201
        anchor = datetime.now(SH) + timedelta(days=5)
        first = start(c, "13812348002", "quick", anchor, key="ledger-2")
        again = start(c, "13812348002", "quick", anchor, key="ledger-2")
        assert first.status_code == 201 and again.status_code == 200
        assert again.json()["id"] == first.json()["id"]
        other = start(c, "13812348002", "quick", anchor + timedelta(days=1), key="ledger-2")
        assert other.status_code == 422 and other.json()["code"] == "idempotency_key_reused"
        assert other.json()["status"] == 422


def test_a_step_already_queued_is_cancelled_by_an_exit(stack_factory: Callable[..., Stack], rdb: redis.Redis) -> None:
    stack = stack_factory()
    with stack.client() as c:
        assert c.put("/v1/series-definitions/quick", json=quick_definition("-PT4S", "-PT2S")).status_code == 201
        sends_after_exit = 0
        for n in range(10):
            phone = f"1381234{8100 + n:04d}"
            anchor = datetime.now(SH) + timedelta(seconds=5)
            sid = start(c, phone, "quick", anchor).json()["id"]
            wait_for(lambda: stack.messages("+86" + phone), timeout=10)
            acknowledged = time.time()
            assert redeem(c, phone) == [sid]
            time.sleep(0.1)
            sends_after_exit += sum(1 for m in stack.messages("+86" + phone)[1:])
            del acknowledged
        assert sends_after_exit == 0
