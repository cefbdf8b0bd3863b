"""Accept, queue, deliver, receipt: the whole path against real Redis, rq, HTTP servers."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta

import pytest

from tests.conftest import Stack, points_expiry, wait_for

pytestmark = pytest.mark.integration


def status_of(stack: Stack, ntf_id: str) -> str:
    with stack.client() as c:
        return str(c.get(f"/v1/notifications/{ntf_id}").json()["status"])


def test_points_expiry_sms_is_delivered_with_timeline(stack: Stack) -> None:
    with stack.client() as c:
        r = c.post("/v1/notify", json=points_expiry(metadata={"campaign": "expiry-2026-12"}))
    assert r.status_code == 202, r.text
    body = r.json()
    assert body["status"] == "queued" and body["id"].startswith("ntf_") and body["segments"] == 1
    ntf_id = body["id"]

    msgs = wait_for(lambda: stack.messages("+8613812345678"), timeout=2)
    assert len(msgs) == 1
    # The brand's signature in front, its unsubscribe footer behind (a marketing SMS).
    assert (
        msgs[0]["text"] == "【星耀商城】尊敬的会员李女士,您的28600积分将于12天后清零,请尽快兑换。 拒收请回复R"
    )
    assert msgs[0]["reference"].endswith(ntf_id)

    wait_for(lambda: status_of(stack, ntf_id) == "delivered", timeout=5)
    with stack.client() as c:
        view = c.get(f"/v1/notifications/{ntf_id}").json()
    assert view["to"]["phone"] == "+86138****5678"
    assert "13812345678" not in str(view)
    assert [e["type"] for e in view["events"]] == ["accepted", "compliance", "attempt", "sent", "receipt"]
    decided = {d["rule"]: d["outcome"] for d in view["events"][1]["decisions"]}
    assert decided == {
        "content": "pass",
        "brand": "pass",
        "wording": "pass",
        "signature": "pass",
        "unsubscribe_footer": "pass",
        "length": "pass",
        "expiry": "pass",
    }
    assert view["attempts"][0]["outcome"] == "sent" and view["attempts"][0]["provider"] == "simulator"
    assert view["provider_message_id"] == msgs[0]["provider_message_id"]
    assert view["metadata"] == {"campaign": "expiry-2026-12"}


def test_all_channels_reach_the_simulator(stack: Stack) -> None:
    with stack.client() as c:
        sent = [
            c.post(
                "/v1/notify",
                json={
                    "to": {"email": "lina@example.com"},
                    "channel": "email",
                    "template": "points_credited",
                    "category": "transactional",
                    "params": {"name": "李女士", "points": 200, "balance": 28800},
                },
            ),
            c.post(
                "/v1/notify",
                json={
                    "to": {"push_token": "fcm-token-abcdefghijklmnop"},
                    "channel": "push",
                    "content": {"title": "会员日", "text": "双倍积分"},
                },
            ),
            c.post(
                "/v1/notify",
                json={
                    "to": {"phone": "+86 139-1234-5678"},
                    "channel": "mms",
                    "brand": "星耀商城",
                    "content": {"text": "会员日海报", "media": ["https://cdn.example.com/a.jpg"]},
                },
            ),
        ]
    assert [r.status_code for r in sent] == [202, 202, 202], [r.text for r in sent]
    wait_for(lambda: len(stack.messages()) == 3, timeout=3)
    by_channel = {m["channel"]: m for m in stack.messages()}
    assert by_channel["email"]["subject"] == "积分到账通知:+200"
    assert by_channel["push"]["title"] == "会员日"
    assert by_channel["mms"]["media"] == ["https://cdn.example.com/a.jpg"]
    assert by_channel["mms"]["to"] == "+8613912345678"


def test_undelivered_receipt_is_final(stack: Stack) -> None:
    with stack.client() as c:
        ntf_id = c.post("/v1/notify", json=points_expiry(phone="13900000123")).json()["id"]
    wait_for(lambda: status_of(stack, ntf_id) == "undelivered", timeout=5)


def test_send_at_holds_until_its_time(stack: Stack) -> None:
    at = datetime.now(UTC) + timedelta(seconds=1.5)
    with stack.client() as c:
        r = c.post("/v1/notify", json=points_expiry(send_at=at.isoformat()))
    assert r.status_code == 202
    assert r.json()["status"] == "scheduled"
    assert datetime.fromisoformat(r.json()["scheduled_for"]) == at.replace(
        microsecond=at.microsecond // 1000 * 1000
    )
    time.sleep(0.7)
    assert stack.messages() == []
    msgs = wait_for(stack.messages, timeout=5)
    received = datetime.fromisoformat(msgs[0]["received_at"])
    assert received >= at


def test_cancel_scheduled_then_conflict(stack: Stack) -> None:
    at = datetime.now(UTC) + timedelta(hours=1)
    with stack.client() as c:
        ntf_id = c.post("/v1/notify", json=points_expiry(send_at=at.isoformat())).json()["id"]
        r = c.post(f"/v1/notifications/{ntf_id}/cancel")
        assert r.status_code == 200 and r.json()["status"] == "cancelled"
        again = c.post(f"/v1/notifications/{ntf_id}/cancel")
        assert again.status_code == 409 and again.json()["code"] == "not_cancellable"
        missing = c.post("/v1/notifications/ntf_00000000000000000000000000/cancel")
        assert missing.status_code == 404


def test_expired_on_arrival_is_suppressed(stack: Stack) -> None:
    past = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
    with stack.client() as c:
        r = c.post("/v1/notify", json=points_expiry(expires_at=past))
    assert r.status_code == 200
    assert r.json()["status"] == "suppressed" and r.json()["reasons"][0]["code"] == "expired"
    time.sleep(0.3)
    assert stack.messages() == []


def test_batch_accepts_good_items_and_rejects_bad_ones_alone(stack: Stack) -> None:
    defaults = {
        "channel": "sms",
        "brand": "星耀商城",
        "template": "points_expiry",
        "params": {"name": "会员", "days": 7},
    }
    items = [
        {"to": {"phone": "13812340001"}, "params": {"points": 100}},
        {"to": {"phone": "12345"}, "params": {"points": 100}},
        {"to": {"phone": "13812340003"}},
        {"to": {"phone": "13812340004"}, "params": {"points": 300}, "bogus": 1},
        {"to": {"phone": "13812340005"}, "params": {"points": 500}},
    ]
    with stack.client() as c:
        r = c.post("/v1/notify/batch", json={"defaults": defaults, "items": items})
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert [x["status"] for x in results] == ["queued", "rejected", "rejected", "rejected", "queued"]
    assert results[1]["reasons"][0]["code"] == "invalid_recipient"
    assert results[2]["reasons"][0]["code"] == "missing_param"
    assert results[3]["reasons"][0]["code"] == "validation_error"
    assert [x["index"] for x in results] == [0, 1, 2, 3, 4]
    wait_for(lambda: len(stack.messages()) == 2, timeout=3)
    assert "您的500积分将于7天后清零" in stack.messages("+8613812340005")[0]["text"]


def test_batch_items_that_render_alike_share_one_check_and_the_others_are_checked_alone(
    stack: Stack,
) -> None:
    """A batch renders and checks each distinct message once: items with the same template and
    parameters share it, an item whose parameters differ (a banned term, 1.0 where another has 1)
    is rendered and checked on its own, and an item whose template makes links gets its own."""
    defaults = {
        "channel": "sms",
        "brand": "星耀商城",
        "template": "points_expiry",
        "params": {"name": "会员", "points": 100, "days": 7},
    }
    items = [
        {"to": {"phone": "13812340011"}},
        {"to": {"phone": "13812340012"}},
        {"to": {"phone": "13812340013"}, "params": {"name": "全网最低价"}},
        {"to": {"phone": "13812340014"}, "params": {"points": 1}},
        {"to": {"phone": "13812340015"}, "params": {"points": 1.0}},
        {"to": {"phone": "13812340016"}},
        {"to": {"phone": "13812340017"}, "template": "points_expiry_countdown"},
        {"to": {"phone": "13812340018"}, "template": "points_expiry_countdown"},
    ]
    with stack.client() as c:
        r = c.post("/v1/notify/batch", json={"defaults": defaults, "items": items})
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert [x["status"] for x in results] == ["queued"] * 2 + ["rejected"] + ["queued"] * 5
    assert results[2]["reasons"][0]["code"] == "banned_wording"
    wait_for(lambda: len(stack.messages()) == 7, timeout=5)
    texts = {i: stack.messages(f"+86138123400{i}")[0]["text"] for i in (11, 12, 14, 15, 16, 17, 18)}
    assert texts[11] == texts[12] == texts[16] and "您的100积分将于7天后清零" in texts[11]
    # 1 and 1.0 are equal (and hash alike) in Python, but do not render alike.
    assert "您的1积分" in texts[14] and "您的1.0积分" in texts[15]
    links = [re.findall(r"http://\S+/l/[0-9A-Za-z]{8}", texts[i]) for i in (17, 18)]
    assert len(links[0]) == len(links[1]) == 1 and links[0] != links[1]


def test_retries_keep_going_with_default_second_granularity(stack_factory: object) -> None:
    """rq rounds scheduled times to whole seconds; a job that wakes early must not strand the message."""
    stack = stack_factory(
        retry_base_seconds=1.0, retry_max_seconds=1.5, housekeeping_interval_seconds=0.2, lease_seconds=60
    )  # type: ignore[operator]
    stack.faults(channel="sms", error_rate=1.0, mode="http_500")
    with stack.client() as c:
        ntf_id = c.post("/v1/notify", json=points_expiry()).json()["id"]

        def attempts() -> int:
            return len(c.get(f"/v1/notifications/{ntf_id}").json()["attempts"])

        wait_for(lambda: attempts() >= 4, timeout=12, interval=0.2)
        stack.clear_faults()
        wait_for(lambda: c.get(f"/v1/notifications/{ntf_id}").json()["status"] == "delivered", timeout=10)
