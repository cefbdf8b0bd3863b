"""Voice calls end to end: the real API, worker and simulator, on a controllable clock.

The stack's policy has no text quiet hours but the shipped voice windows (12:00-14:00, 21:00-08:00),
so every test puts the clock where it needs it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from gateway.timeutil import set_clock
from tests.conftest import Stack, wait_for

pytestmark = pytest.mark.integration
SH = ZoneInfo("Asia/Shanghai")
PHONE = "+8613812345678"


def local(*args: int) -> float:
    return datetime(*args, tzinfo=SH).timestamp()


def call(phone: str = "13812345678", **extra: Any) -> dict[str, Any]:
    """A points-expiry call, rendered from the template's [voice] variant."""
    body: dict[str, Any] = {
        "to": {"phone": phone, "user_id": "m-1001"},
        "channel": "voice",
        "brand": "星耀商城",
        "template": "points_expiry",
        "params": {"name": "李女士", "points": 28600, "days": 12},
    }
    body.update(extra)
    return body


def calls(stack: Stack, to: str) -> list[dict[str, Any]]:
    got = httpx.get(f"{stack.sim_url}/messages", params={"to": to, "channel": "voice"}, timeout=5)
    return got.json()  # type: ignore[no-any-return]


def view(stack: Stack, ntf_id: str) -> dict[str, Any]:
    with stack.client() as c:
        return c.get(f"/v1/notifications/{ntf_id}").json()  # type: ignore[no-any-return]


def test_a_call_reaches_the_simulator_with_its_text_and_ends_delivered(stack: Stack) -> None:
    set_clock(local(2026, 12, 2, 10, 0))
    with stack.client() as c:
        accepted = c.post("/v1/notify", json=call()).json()
    assert accepted["status"] == "queued" and accepted["channel"] == "voice", accepted
    assert accepted["segments"] is None  # a call has no SMS segments
    [got] = wait_for(lambda: calls(stack, PHONE))
    assert got["channel"] == "voice" and got["reference"] == f"acme:{accepted['id']}"
    # What the call says: the voice variant, without the SMS signature or unsubscribe footer.
    assert (
        got["text"]
        == "您好,这里是会员中心。尊敬的会员李女士,您有28600积分将于12天后清零,请尽快登录会员中心兑换。"
    )
    assert got["call"]["answered"] is True and got["call"]["status"] == "ANSWERED"
    done = wait_for(lambda: (v := view(stack, accepted["id"]))["status"] == "delivered" and v)
    assert done["to"]["phone"] == "+86138****5678"
    [receipt] = [e for e in done["events"] if e["type"] == "receipt"]
    assert receipt["provider_code"] == "ANSWERED"
    # No SMS went to that number: the call is the only message.
    assert [m["channel"] for m in stack.messages(PHONE)] == ["voice"]


def test_a_switched_off_number_does_not_answer_and_the_call_ends_undelivered(stack: Stack) -> None:
    set_clock(local(2026, 12, 2, 10, 0))
    with stack.client() as c:
        accepted = c.post("/v1/notify", json=call("13900000123")).json()
    [got] = wait_for(lambda: calls(stack, "+8613900000123"))
    assert got["call"] == {"answered": False, "status": "NO_ANSWER", "play_times": 2}
    done = wait_for(lambda: (v := view(stack, accepted["id"]))["status"] == "undelivered" and v)
    [receipt] = [e for e in done["events"] if e["type"] == "receipt"]
    assert receipt["provider_code"] == "NO_ANSWER"


@pytest.mark.parametrize(
    "content",
    [
        {"text": "李女士,您的积分即将清零,详情请访问 https://shop.example.cn/points 兑换。"},
        {"text": "李女士,您的积分即将清零,请登录 www.example.com 兑换。"},
    ],
)
def test_a_link_in_voice_text_is_a_422(stack: Stack, content: dict[str, str]) -> None:
    set_clock(local(2026, 12, 2, 10, 0))
    body = call(content=content)
    del body["template"], body["params"]
    with stack.client() as c:
        r = c.post("/v1/notify", json=body)
    assert r.status_code == 422, r.text
    problem = r.json()
    assert problem["code"] == "invalid_content" and problem["channel"] == "voice"
    assert "link" in problem["reasons"][0]["detail"] and problem["reasons"][0]["field"] == "text"
    time.sleep(0.3)
    assert calls(stack, PHONE) == []


def test_a_tenant_voice_template_with_a_link_is_refused(stack: Stack) -> None:
    with stack.client() as c:
        r = c.put(
            "/v1/templates/call_with_link",
            json={
                "category": "marketing",
                "voice": {"text": '请点击 {{ link("https://shop.example.cn") }} 兑换'},
            },
        )
        assert r.status_code == 422, r.text
        assert "cannot carry a link" in r.text
        ok = c.put(
            "/v1/templates/call_ok",
            json={"category": "transactional", "voice": {"text": "{{ name }},您的订单已发货。"}},
        )
        assert ok.status_code == 200, ok.text
        assert ok.json()["channels"] == ["voice"]


def test_voice_text_over_the_limit_is_a_422(stack: Stack) -> None:
    body = call(content={"text": "积" * 201})
    del body["template"], body["params"]
    with stack.client() as c:
        r = c.post("/v1/notify", json=body)
    assert r.status_code == 422 and r.json()["code"] == "content_too_long", r.text


def test_a_call_accepted_at_half_past_twelve_is_scheduled_for_two(
    stack_factory: Callable[..., Stack],
) -> None:
    stack = stack_factory(lease_seconds=0.5)
    set_clock(local(2026, 12, 2, 12, 30))
    with stack.client() as c:
        held = c.post("/v1/notify", json=call()).json()
        # A text at the same moment goes at once: lunch holds only calls.
        sms = c.post(
            "/v1/notify",
            json={**call("13812340009"), "channel": "sms", "category": "marketing"},
        ).json()
    assert held["status"] == "scheduled", held
    assert datetime.fromisoformat(held["scheduled_for"]) == datetime(2026, 12, 2, 14, 0, tzinfo=SH)
    assert held["reasons"][0]["code"] == "quiet_hours"
    assert sms["status"] == "queued"
    wait_for(lambda: stack.messages("+8613812340009"))

    set_clock(local(2026, 12, 2, 13, 59, 58))
    time.sleep(1.0)
    assert calls(stack, PHONE) == []
    wait_for(lambda: calls(stack, PHONE), timeout=8)
    sent = view(stack, held["id"])
    at = datetime.fromisoformat(sent["attempts"][0]["at"])
    assert datetime(2026, 12, 2, 14, 0, tzinfo=SH) <= at < datetime(2026, 12, 2, 14, 0, 5, tzinfo=SH)


def test_a_transactional_call_at_night_waits_for_eight(stack: Stack) -> None:
    set_clock(local(2026, 12, 2, 22, 15))
    body = call(template="points_credited", params={"name": "李女士", "points": 200, "balance": 28800})
    with stack.client() as c:
        held = c.post("/v1/notify", json=body).json()
    assert held["status"] == "scheduled", held
    assert datetime.fromisoformat(held["scheduled_for"]) == datetime(2026, 12, 3, 8, 0, tzinfo=SH)


def test_a_member_who_opted_out_of_calls_gets_none_but_still_gets_texts(stack: Stack) -> None:
    set_clock(local(2026, 12, 2, 10, 0))
    with stack.client() as c:
        r = c.put(f"/v1/optouts/{PHONE}", json={"brand": None, "channel": "voice", "reason": "不要来电"})
        assert r.status_code in (200, 201), r.text
        suppressed = c.post("/v1/notify", json=call()).json()
        text = c.post("/v1/notify", json={**call(), "channel": "sms", "category": "marketing"}).json()
    assert suppressed["status"] == "suppressed" and suppressed["reasons"][0]["code"] == "opted_out"
    assert text["status"] == "queued"


def test_marketing_calls_count_in_the_monthly_cap(stack: Stack) -> None:
    set_clock(local(2026, 12, 2, 10, 0))
    with stack.client() as c:
        got = [c.post("/v1/notify", json=call()).json()["status"] for _ in range(4)]
        got.append(c.post("/v1/notify", json={**call(), "channel": "sms"}).json()["status"])
    # The cap of 4 marketing messages a month counts calls and texts alike: the SMS after four calls is over.
    assert got == ["queued"] * 4 + ["suppressed"]


def test_the_console_simulator_page_shows_the_call_and_how_it_ended(
    stack_factory: Callable[..., Stack],
) -> None:
    from tests.integration.test_console_http import signed_in

    stack = stack_factory(console_simulator=True)
    set_clock(local(2026, 12, 2, 10, 0))
    with stack.client() as c:
        accepted = c.post("/v1/notify", json=call()).json()
    wait_for(lambda: calls(stack, PHONE))
    page = signed_in(stack).get("/console/simulator")
    assert page.status_code == 200
    row = next(r for r in page.text.split("<tr>") if accepted["id"] in r)
    assert "<td>voice</td>" in row and "ANSWERED" in row and "28600积分将于12天后清零" in row
    assert "+86138****5678" in row and PHONE not in row  # the number masked, as everywhere
