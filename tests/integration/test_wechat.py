"""WeChat subscribe messages through the whole stack: the grant ledger, 43101, fallback to SMS, limits."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from gateway.metrics import REGISTRY
from tests.conftest import Stack, statuses, wait_for

pytestmark = pytest.mark.integration

OPENID = "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"
REFUSING = "oRefuse_M2pxb1Q9zNjWeS6o"  # the simulator answers 43101 for it
TEMPLATE = "tmpl-points-credited"


def wechat(openid: str = OPENID, phone: str = "13812345678", **extra: Any) -> dict[str, Any]:
    """A points-credited notice for the mini program, falling back to SMS."""
    body: dict[str, Any] = {
        "to": {"wechat_openid": openid, "phone": phone, "user_id": "m-1001"},
        "channel": "wechat",
        "fallback": ["sms"],
        "brand": "星耀商城",
        "content": {
            "template_id": TEMPLATE,
            "page": "pages/points/index",
            "data": {"thing1": {"value": "积分到账提醒"}, "number2": {"value": "200"}},
            "text": "【星耀商城】李女士,您获得200积分,当前积分余额28600。",
        },
        "category": "transactional",
    }
    body.update(extra)
    return body


def grant(stack: Stack, openid: str, count: int) -> dict[str, Any]:
    with stack.client() as c:
        r = c.post("/v1/wechat/grants", json={"openid": openid, "template_id": TEMPLATE, "count": count})
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


def balance(stack: Stack, openid: str) -> int:
    with stack.client() as c:
        r = c.get("/v1/wechat/grants", params={"openid": openid, "template_id": TEMPLATE})
    assert r.status_code == 200, r.text
    return int(r.json()["balance"])


def timeline(stack: Stack, ntf_id: str) -> dict[str, Any]:
    with stack.client() as c:
        return c.get(f"/v1/notifications/{ntf_id}").json()  # type: ignore[no-any-return]


def fallback_of(stack: Stack, ntf_id: str) -> dict[str, Any] | None:
    return next((e for e in timeline(stack, ntf_id)["events"] if e["type"] == "fallback"), None)


def notify(stack: Stack, body: dict[str, Any]) -> str:
    with stack.client() as c:
        r = c.post("/v1/notify", json=body)
    assert r.status_code == 202, r.text
    return str(r.json()["id"])


def test_two_grants_two_messages_the_third_falls_back_to_sms(stack: Stack) -> None:
    assert grant(stack, OPENID, 2) == {"openid": "oUpF…eS6o", "template_id": TEMPLATE, "balance": 2}
    first, second = notify(stack, wechat()), notify(stack, wechat())
    wait_for(lambda: statuses(stack, [first, second]) == {"delivered": 2}, timeout=15, interval=0.2)
    got = stack.messages(OPENID)
    assert [(m["channel"], m["template_id"], m["page"]) for m in got] == [
        ("wechat", TEMPLATE, "pages/points/index")
    ] * 2
    assert got[0]["data"] == {"thing1": {"value": "积分到账提醒"}, "number2": {"value": "200"}}
    assert balance(stack, OPENID) == 0
    view = timeline(stack, first)
    assert view["to"]["wechat_openid"] == "oUpF…eS6o" and OPENID not in str(view)

    third = notify(stack, wechat())
    went = wait_for(lambda: fallback_of(stack, third), timeout=15, interval=0.2)
    assert (went["channel"], went["status"]) == ("sms", "queued")
    failed = timeline(stack, third)
    assert failed["status"] == "failed" and failed["error_code"] == "no_wechat_grant"
    kinds = [(e["type"], e.get("reason")) for e in failed["events"]]
    assert ("failed", "no_wechat_grant") in kinds
    assert not any(e["type"] == "attempt" for e in failed["events"])  # no provider was asked
    sms_id = str(went["id"])
    wait_for(lambda: statuses(stack, [sms_id]) == {"delivered": 1}, timeout=15, interval=0.2)
    [texted] = stack.messages("+8613812345678")
    assert texted["channel"] == "sms" and "200积分" in texted["text"]
    assert len(stack.messages(OPENID)) == 2  # the third never reached WeChat


def test_a_43101_stops_using_the_members_grants(stack: Stack) -> None:
    grant(stack, REFUSING, 3)
    refused = notify(stack, wechat(REFUSING, phone="13812340001"))
    went = wait_for(lambda: fallback_of(stack, refused), timeout=15, interval=0.2)
    assert went["channel"] == "sms"
    view = timeline(stack, refused)
    assert view["error_code"] == "no_wechat_grant"
    [attempt] = [e for e in view["events"] if e["type"] == "attempt"]
    assert attempt["error_code"] == "43101"  # the provider was asked once, and refused
    assert balance(stack, REFUSING) == 0  # the two grants left are gone

    sends_before = stack.simulator.state.sends_seen
    again = notify(stack, wechat(REFUSING, phone="13812340001"))
    wait_for(lambda: fallback_of(stack, again), timeout=15, interval=0.2)
    events = timeline(stack, again)["events"]
    assert not any(e["type"] == "attempt" for e in events)
    assert ("failed", "no_wechat_grant") in [(e["type"], e.get("reason")) for e in events]
    # Only the SMS fallback reached the simulator, not a second WeChat send.
    wait_for(lambda: len(stack.messages("+8613812340001")) == 2, timeout=15, interval=0.2)
    assert stack.simulator.state.sends_seen == sends_before + 1


def test_a_thing_over_20_characters_is_a_422_at_accept(stack: Stack) -> None:
    body = wechat()
    body["content"]["data"]["thing1"] = {"value": "积分到账提醒" * 4}  # 24 characters
    with stack.client() as c:
        r = c.post("/v1/notify", json=body)
    assert r.status_code == 422, r.text
    problem = r.json()
    assert problem["code"] == "content_too_long" and problem["status"] == 422
    [why] = problem["reasons"]
    assert why["field"] == "data.thing1.value" and "20" in why["detail"]
    assert stack.messages(OPENID) == []


def test_wechat_needs_an_openid_and_a_template(stack: Stack) -> None:
    with stack.client() as c:
        no_openid = c.post("/v1/notify", json={**wechat(), "to": {"phone": "13812345678"}})
        no_template = wechat()
        del no_template["content"]["template_id"]
        no_tpl = c.post("/v1/notify", json=no_template)
    assert no_openid.status_code == 422 and no_openid.json()["code"] == "invalid_recipient"
    assert no_tpl.status_code == 422 and no_tpl.json()["code"] == "validation_error"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"openid": OPENID, "template_id": TEMPLATE, "count": 0}, "count"),
        ({"openid": OPENID, "template_id": TEMPLATE, "count": 101}, "count"),
        ({"template_id": TEMPLATE}, "openid"),
        ({"openid": "不是openid", "template_id": TEMPLATE}, "openid"),
        ({"openid": OPENID, "template_id": TEMPLATE, "extra": 1}, "extra"),
    ],
)
def test_bad_grants_are_problems_with_a_code(stack: Stack, body: dict[str, Any], field: str) -> None:
    with stack.client() as c:
        r = c.post("/v1/wechat/grants", json=body)
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["code"] == "validation_error"
    assert field in r.text


def test_six_messages_for_one_grant_send_exactly_one(stack_factory: Callable[..., Stack]) -> None:
    # Two workers: the six may be claimed in one job or several; the ledger lets one through either way.
    stack = stack_factory(workers=2)
    member = "oRace_M2pxb1Q9zNjWeS6o"

    def counted(outcome: str) -> float:  # the workers are threads of this process: one registry
        return REGISTRY.get_sample_value("tidings_wechat_grants_total", {"outcome": outcome}) or 0.0

    before = {o: counted(o) for o in ("recorded", "spent", "missing")}
    grant(stack, member, 1)
    with stack.client() as c:
        r = c.post(
            "/v1/notify/batch",
            json={"defaults": wechat(member, phone="13812340002"), "items": [{} for _ in range(6)]},
        )
    assert r.status_code == 200, r.text
    ids = [x["id"] for x in r.json()["results"]]
    wait_for(
        lambda: (
            sum(statuses(stack, ids).values()) == 6
            and "queued" not in statuses(stack, ids)
            and "sending" not in statuses(stack, ids)
        ),
        timeout=20,
        interval=0.2,
    )
    assert statuses(stack, ids) == {"delivered": 1, "failed": 5}
    assert len(stack.messages(member)) == 1
    assert balance(stack, member) == 0
    assert {o: counted(o) - n for o, n in before.items()} == {"recorded": 1, "spent": 1, "missing": 5}


def test_recorded_grants_are_audit_events_with_the_openid_masked(stack: Stack) -> None:
    member = "oAudit_M2pxb1Q9zNjWeS6o"
    grant(stack, member, 3)

    def found() -> list[dict[str, Any]]:
        with stack.client() as c:
            return list(
                c.get("/v1/audit/events", params={"type": "wechat_grant", "limit": 100}).json()["events"]
            )

    [event] = wait_for(found, timeout=20, interval=0.3)
    assert event["channel"] == "wechat" and event["address"] == "oAud…eS6o"
    assert (event["data"]["template_id"], event["data"]["count"]) == (TEMPLATE, 3)
    assert member not in str(event)


def test_a_template_sends_its_wechat_variant_and_its_values_are_checked_too(stack: Stack) -> None:
    member = "oTmpl_M2pxb1Q9zNjWeS6o"
    grant(stack, member, 1)
    body: dict[str, Any] = {
        "to": {"wechat_openid": member, "phone": "13812340003"},
        "channel": "wechat",
        "fallback": ["sms"],
        "brand": "星耀商城",
        "template": "points_credited",
        "params": {"name": "李女士", "points": 200, "balance": 28600, "source": "门店消费"},
    }
    with stack.client() as c:
        too_long = c.post(
            "/v1/notify",
            json={**body, "params": {**body["params"], "source": "双十一会员日门店消费满额赠送活动奖励"}},
        )
    assert too_long.status_code == 422, too_long.text
    assert too_long.json()["reasons"][0]["field"] == "data.thing4.value"
    ntf = notify(stack, body)
    wait_for(lambda: statuses(stack, [ntf]) == {"delivered": 1}, timeout=15, interval=0.2)
    [got] = stack.messages(member)
    assert got["template_id"] == "tmpl-points-credited"
    assert got["data"]["thing4"] == {"value": "门店消费获得积分"} and got["data"]["number2"] == {
        "value": "200"
    }


def test_banned_wording_in_a_data_value_is_a_422_naming_it(stack: Stack) -> None:
    body = wechat()
    body["content"]["data"]["thing1"] = {"value": "全网最低价积分兑换"}
    with stack.client() as c:
        r = c.post("/v1/notify", json=body)
    assert r.status_code == 422, r.text
    [why] = r.json()["reasons"]
    assert why["code"] == "banned_wording" and why["terms"][0]["field"] == "data.thing1.value"
    assert stack.messages(OPENID) == []
