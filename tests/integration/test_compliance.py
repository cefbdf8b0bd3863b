"""Compliance at accept and at dispatch: caps, opt-outs, quiet hours and expiry, with a controllable clock."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import httpx
import pytest
import redis

from gateway.optouts.store import OptOuts
from gateway.recipients import Members
from gateway.state.redisdb import async_client
from gateway.timeutil import set_clock, system_clock
from tests.conftest import API_KEY, TENANT, Stack, points_expiry, wait_for

pytestmark = pytest.mark.integration
SH = ZoneInfo("Asia/Shanghai")


def points_credited(phone: str = "13812345678", **extra: object) -> dict[str, object]:
    """A points-credited SMS: the catalogue's transactional template."""
    body = points_expiry(
        phone,
        category="transactional",
        template="points_credited",
        params={"name": "李女士", "points": 200, "balance": 28800},
    )
    body.update(extra)
    return body


def opt_out(stack: Stack, address: str, **scope: str) -> None:
    async def run() -> None:
        client = async_client(stack.redis_url)
        try:
            await OptOuts(client, Members(stack.settings.hmac_key)).add(
                TENANT, address, source="sms_reply", **scope
            )
        finally:
            await client.aclose()

    asyncio.run(run())


def concurrent_notifies(stack: Stack, bodies: list[dict[str, object]]) -> list[httpx.Response]:
    async def fire() -> list[httpx.Response]:
        async with httpx.AsyncClient(
            base_url=stack.api_url, timeout=20, limits=httpx.Limits(max_connections=50)
        ) as c:
            headers = {"Authorization": f"Bearer {API_KEY}"}
            return await asyncio.gather(*(c.post("/v1/notify", json=b, headers=headers) for b in bodies))

    return asyncio.run(fire())


def status(stack: Stack, ntf_id: str) -> dict[str, object]:
    with stack.client() as c:
        return c.get(f"/v1/notifications/{ntf_id}").json()  # type: ignore[no-any-return]


def test_fifty_concurrent_marketing_notifies_under_a_cap_of_four(stack_factory: Callable[..., Stack]) -> None:
    stack = stack_factory(workers=0)
    later = (datetime.now(SH) + timedelta(days=1)).replace(hour=11, minute=0).isoformat()
    bodies = [
        points_expiry(send_at=later, params={"name": "李女士", "points": 100 + i, "days": 7})
        for i in range(50)
    ]
    responses = concurrent_notifies(stack, bodies)
    statuses = Counter(r.json()["status"] for r in responses)
    assert statuses == Counter({"scheduled": 4, "suppressed": 46})
    suppressed = [r for r in responses if r.json()["status"] == "suppressed"]
    assert {r.status_code for r in suppressed} == {200}
    assert {r.json()["reasons"][0]["code"] for r in suppressed} == {"frequency_cap"}
    kept = [r.json()["id"] for r in responses if r.json()["status"] == "scheduled"]

    with stack.client() as c:
        assert c.post("/v1/notify", json=points_expiry(send_at=later)).json()["status"] == "suppressed"
        assert c.post(f"/v1/notifications/{kept[0]}/cancel").status_code == 200
        freed = c.post("/v1/notify", json=points_expiry(send_at=later))
        assert freed.json()["status"] == "scheduled"
        assert c.post("/v1/notify", json=points_expiry(send_at=later)).json()["status"] == "suppressed"
        # Transactional messages are not counted (a transactional template: a marketing one cannot
        # be sent as transactional).
        tx = c.post("/v1/notify", json=points_credited(send_at=later))
        assert tx.json()["status"] == "scheduled"


def test_opt_out_after_accept_is_honoured_at_dispatch_and_frees_the_slot(
    stack_factory: Callable[..., Stack], rdb: redis.Redis
) -> None:
    stack = stack_factory(workers=0)
    with stack.client() as c:
        ntf_id = c.post("/v1/notify", json=points_expiry()).json()["id"]
    assert [k for k in rdb.keys("tid:{acme}:cap:*")] and int(rdb.get(rdb.keys("tid:{acme}:cap:*")[0])) == 1
    opt_out(stack, "+8613812345678", brand="星耀商城")  # the member replies TD before a worker gets to it
    stack.start_worker()
    view = wait_for(lambda: (v := status(stack, ntf_id))["status"] == "suppressed" and v, timeout=10)
    assert view["reasons"][0]["code"] == "opted_out"
    assert [e["type"] for e in view["events"]][-2:] == ["compliance", "suppressed"]
    assert view["events"][-2]["stage"] == "dispatch"
    time.sleep(0.3)
    assert stack.messages() == []
    assert int(rdb.get(rdb.keys("tid:{acme}:cap:*")[0])) == 0
    # And the next marketing notify for that brand is suppressed at once.
    with stack.client() as c:
        r = c.post("/v1/notify", json=points_expiry())
        assert r.status_code == 200 and r.json()["reasons"][0]["code"] == "opted_out"
        # Another brand is not covered by this opt-out.
        other = c.post("/v1/notify", json=points_expiry(brand="月光百货"))
        assert other.json()["status"] == "queued"


def test_global_and_channel_opt_outs(stack: Stack) -> None:
    opt_out(stack, "+8613812340001")  # everything
    opt_out(stack, "+8613812340002", channel="sms")
    with stack.client() as c:
        assert (
            c.post("/v1/notify", json=points_expiry(phone="13812340001", brand="月光百货")).json()["status"]
            == "suppressed"
        )
        assert c.post("/v1/notify", json=points_expiry(phone="13812340002")).json()["status"] == "suppressed"
        mms = c.post("/v1/notify", json={**points_expiry(phone="13812340002"), "channel": "mms"})
        assert mms.json()["status"] == "queued"


def local(*args: int) -> float:
    return datetime(*args, tzinfo=SH).timestamp()


def test_quiet_hours_with_a_controllable_clock(stack_factory: Callable[..., Stack], tmp_path: object) -> None:
    from compliance.policy import load_policy

    stack = stack_factory(policy_path=None, lease_seconds=0.5)
    assert load_policy(None).rules(TENANT, "星耀商城").quiet_start == 21 * 60
    set_clock(local(2026, 11, 25, 23, 0))
    with stack.client() as c:
        held = c.post("/v1/notify", json=points_expiry()).json()
        assert held["status"] == "scheduled"
        assert datetime.fromisoformat(held["scheduled_for"]) == datetime(2026, 11, 26, 8, 0, tzinfo=SH)
        assert held["reasons"][0]["code"] == "quiet_hours"

        tx = c.post("/v1/notify", json=points_credited(phone="13812340009")).json()
        assert tx["status"] == "queued"
        wait_for(lambda: stack.messages("+8613812340009"), timeout=3)

        expiring = c.post(
            "/v1/notify", json=points_expiry(phone="13812340008", expires_at="2026-11-26T07:00:00+08:00")
        ).json()
        assert expiring["status"] == "suppressed" and expiring["reasons"][0]["code"] == "expired"

    set_clock(local(2026, 11, 26, 7, 59, 58))
    time.sleep(1.0)
    assert stack.messages("+8613812345678") == []
    wait_for(lambda: stack.messages("+8613812345678"), timeout=8)
    view = status(stack, held["id"])
    sent_at = datetime.fromisoformat(view["attempts"][0]["at"])
    assert datetime(2026, 11, 26, 8, 0, tzinfo=SH) <= sent_at < datetime(2026, 11, 26, 8, 0, 5, tzinfo=SH)
    assert stack.messages("+8613812340008") == []


def test_cap_month_rolls_over_at_local_midnight(stack: Stack) -> None:
    set_clock(local(2026, 11, 30, 23, 59, 50))  # 15:59:50 UTC: November everywhere
    with stack.client() as c:
        first = [c.post("/v1/notify", json=points_expiry()).json()["status"] for _ in range(5)]
        assert first == ["queued"] * 4 + ["suppressed"]
        set_clock(local(2026, 12, 1, 0, 0, 5))  # 16:00:05 UTC on Nov 30, but December in Shanghai
        assert c.post("/v1/notify", json=points_expiry()).json()["status"] == "queued"
    assert abs(system_clock() - local(2026, 12, 1, 0, 0, 5)) < 60


def test_dry_run_decides_without_sending_or_counting(stack: Stack, rdb: redis.Redis) -> None:
    with stack.client() as c:
        allow = c.post("/v1/compliance/check", json=points_expiry()).json()
        assert allow["decision"] == "allow" and allow["segments"] == 1 and allow["encoding"] == "UCS-2"
        assert allow["rendered"]["text"].startswith("【星耀商城】") and allow["rendered"]["text"].endswith(
            "拒收请回复R"
        )
        banned = c.post(
            "/v1/compliance/check",
            json={**points_expiry(), "template": None, "content": {"text": "全网最低价,限时秒杀"}},
        ).json()
        assert banned["decision"] == "reject"
        assert banned["reasons"][0]["code"] == "banned_wording"
        assert banned["reasons"][0]["terms"][:1] == [
            {"term": "全网最低", "start": 0, "end": 4, "category": "absolute", "field": "text"}
        ]
        for _ in range(5):
            c.post("/v1/compliance/check", json=points_expiry())
    assert rdb.keys("tid:{acme}:ntf:*") == [] and rdb.keys("tid:{acme}:cap:*") == []
    assert stack.messages() == []
    opt_out(stack, "+8613812345678")
    with stack.client() as c:
        assert c.post("/v1/compliance/check", json=points_expiry()).json()["decision"] == "suppress"


def test_notify_rejects_banned_wording_with_positions(stack: Stack) -> None:
    body = {**points_expiry(), "template": None, "content": {"text": "会员日全场最 低 價!"}}
    with stack.client() as c:
        r = c.post("/v1/notify", json=body)
    assert r.status_code == 422 and r.json()["code"] == "banned_wording"
    assert r.json()["reasons"][0]["terms"] == [
        {"term": "最低价", "start": 5, "end": 10, "category": "absolute", "field": "text"}
    ]


def test_lint_command(stack: Stack) -> None:
    import subprocess
    import sys

    from tests.conftest import ROOT

    out = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "lint", "会员日全场最低价", "--brand", "星耀商城"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 1 and "会员日全场[[最低价]]" in out.stdout and "banned_wording" in out.stdout
    ok = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "lint", "您的积分将于12天后清零", "--brand", "星耀商城"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (
        ok.returncode == 0
        and "rendered: 【星耀商城】您的积分将于12天后清零 拒收请回复R" in ok.stdout
        and "segments: 1" in ok.stdout
    )


def test_a_suppressed_accept_is_recorded_in_full_with_and_without_a_key_and_in_a_batch(
    stack_factory: Callable[..., Stack],
) -> None:
    # What a suppression writes is handed to the accept script only when a rule suppresses: the
    # record, its events, the stored idempotent answer and the batch answer must all show it.
    stack = stack_factory(workers=0)
    opt_out(stack, "+8613900000001")
    with stack.client() as c:
        keyed = c.post("/v1/notify", json=points_expiry("13900000001"), headers={"Idempotency-Key": "sup-1"})
        assert keyed.status_code == 200 and keyed.json()["status"] == "suppressed"
        assert keyed.json()["reasons"][0]["code"] == "opted_out"
        again = c.post("/v1/notify", json=points_expiry("13900000001"), headers={"Idempotency-Key": "sup-1"})
        assert again.status_code == 200 and again.headers.get("idempotent-replayed") == "true"
        assert again.json() == keyed.json()
        batch = c.post(
            "/v1/notify/batch",
            json={
                "defaults": {k: v for k, v in points_expiry().items() if k != "to"},
                "items": [{"to": {"phone": "13900000001"}}, {"to": {"phone": "13900000002"}}],
            },
        ).json()["results"]
        assert [r["status"] for r in batch] == ["suppressed", "queued"]
        assert batch[0]["reasons"][0]["code"] == "opted_out" and batch[1]["reasons"] == []
        for ntf_id in (keyed.json()["id"], batch[0]["id"]):
            view = c.get(f"/v1/notifications/{ntf_id}").json()
            assert view["status"] == "suppressed" and view["error_code"] == "opted_out"
            assert view["reasons"][0]["code"] == "opted_out"
            kinds = [e["type"] for e in view["events"]]
            assert kinds == ["accepted", "compliance", "compliance", "suppressed"], kinds
            assert view["events"][2] == {
                "type": "compliance",
                "at": view["events"][2]["at"],
                "stage": "accept",
                "rule": "opt_out",
                "outcome": "suppress",
                "reason": "opted_out",
            }
    assert stack.messages() == []


def test_a_templates_category_is_authoritative(stack_factory: Callable[..., Stack]) -> None:
    # The bypass: a marketing template sent as transactional would skip the footer, the cap and
    # quiet hours. It is refused; without a category the request takes the template's.
    stack = stack_factory(workers=0)
    with stack.client() as c:
        bypass = c.post("/v1/notify", json=points_expiry(category="transactional"))
        assert bypass.status_code == 422 and bypass.json()["code"] == "category_mismatch", bypass.text
        assert bypass.json()["reasons"][0]["code"] == "category_mismatch"
        check = c.post("/v1/compliance/check", json=points_expiry(category="transactional")).json()
        assert check["decision"] == "reject" and check["reasons"][0]["code"] == "category_mismatch"
        wrong_way = c.post("/v1/notify", json=points_credited(category="marketing"))
        assert wrong_way.status_code == 422 and wrong_way.json()["code"] == "category_mismatch"

        bare = points_credited()
        del bare["category"]
        credited = c.post("/v1/notify", json=bare)
        assert credited.status_code == 202, credited.text
        view = c.get(f"/v1/notifications/{credited.json()['id']}").json()
        assert view["category"] == "transactional"
        assert not view["rendered"]["text"].endswith("拒收请回复R")  # no marketing footer

        bare = points_expiry()
        del bare["category"]
        expiry = c.post("/v1/notify", json=bare).json()
        view = c.get(f"/v1/notifications/{expiry['id']}").json()
        assert view["category"] == "marketing" and view["rendered"]["text"].endswith("拒收请回复R")

        batch = c.post(
            "/v1/notify/batch",
            json={
                "defaults": {"channel": "sms", "brand": "星耀商城", "template": "points_expiry"},
                "items": [
                    {"to": {"phone": "13812340101"}, "params": {"name": "王先生", "points": 10, "days": 3}},
                    {
                        "to": {"phone": "13812340102"},
                        "category": "transactional",
                        "params": {"name": "王先生", "points": 10, "days": 3},
                    },
                ],
            },
        ).json()["results"]
        assert [r["status"] for r in batch] == ["queued", "rejected"]
        assert batch[1]["reasons"][0]["code"] == "category_mismatch"


def test_a_brand_the_policy_does_not_register_is_refused(stack_factory: Callable[..., Stack]) -> None:
    # Providers send only approved signatures: any brand name used to be accepted and signed.
    stack = stack_factory(workers=1)
    with stack.client() as c:
        r = c.post("/v1/notify", json=points_expiry(brand="不存在的品牌"))
        body = r.json()
        assert r.status_code == 422 and body["status"] == 422 and body["code"] == "unknown_brand", r.text
        assert body["type"].endswith("/rejected") and body["id"] is None
        assert "不存在的品牌" in body["reasons"][0]["detail"]
        # Signing the text by hand, with no brand, is no way round it.
        unbranded = {
            "to": {"phone": "13812345678"},
            "channel": "sms",
            "content": {"text": "【不存在的品牌】您的积分将于12天后清零"},
        }
        r = c.post("/v1/notify", json=unbranded)
        assert r.status_code == 422 and r.json()["code"] == "unknown_brand", r.text
        check = c.post("/v1/compliance/check", json=points_expiry(brand="不存在的品牌")).json()
        assert check["decision"] == "reject" and check["reasons"][0]["code"] == "unknown_brand"
        batch = c.post(
            "/v1/notify/batch",
            json={
                "defaults": {"channel": "sms", "template": "points_expiry"},
                "items": [
                    {
                        "to": {"phone": "13812340201"},
                        "brand": "星耀商城",
                        "params": {"name": "王先生", "points": 10, "days": 3},
                    },
                    {
                        "to": {"phone": "13812340202"},
                        "brand": "不存在的品牌",
                        "params": {"name": "王先生", "points": 10, "days": 3},
                    },
                ],
            },
        ).json()["results"]
        assert [(r["status"], r["reasons"][0]["code"] if r["reasons"] else None) for r in batch] == [
            ("queued", None),
            ("rejected", "unknown_brand"),
        ]
        # The registered brand goes; nothing under the unknown one reached the simulator.
        wait_for(lambda: stack.messages("+8613812340201"), timeout=10)
        time.sleep(0.3)
        assert all("不存在的品牌" not in m["text"] for m in stack.messages())
