"""Members' replies through the simulator, and the opt-out API."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.conftest import Stack, points_expiry, wait_for

pytestmark = pytest.mark.integration


def reply(
    stack: Stack, text: str, sender: str = "+8613812345678", brand: str | None = "星耀商城"
) -> httpx.Response:
    return httpx.post(
        f"{stack.sim_url}/replies", json={"from": sender, "text": text, "brand": brand}, timeout=10
    )


def test_td_reply_opts_out_of_that_brand_and_holds_back_queued_messages(stack_factory: object) -> None:
    stack = stack_factory()  # type: ignore[operator]
    with stack.client() as c:
        c.post("/v1/notify", json=points_expiry())
    wait_for(lambda: stack.messages("+8613812345678"), timeout=5)

    stack.stop_workers()
    with stack.client() as c:
        queued = c.post(
            "/v1/notify", json=points_expiry(params={"name": "李女士", "points": 1, "days": 1})
        ).json()
    assert queued["status"] == "queued"

    answer = reply(stack, "ＴＤ 不要再发")
    assert answer.status_code == 200 and answer.json()["gateway"]["action"] == "opted_out"
    again = reply(stack, "TD")  # a provider's retry or the member again: still one opt-out
    assert again.json()["gateway"]["action"] == "already_opted_out"
    assert reply(stack, "好的谢谢").json()["gateway"]["action"] == "none"

    stack.start_worker()
    with stack.client() as c:
        wait_for(
            lambda: c.get(f"/v1/notifications/{queued['id']}").json()["status"] == "suppressed", timeout=10
        )
        nxt = c.post("/v1/notify", json=points_expiry())
        assert nxt.status_code == 200 and nxt.json()["reasons"][0]["code"] == "opted_out"
        other_brand = c.post("/v1/notify", json=points_expiry(brand="月光百货"))
        assert other_brand.json()["status"] == "queued"
        view = c.get("/v1/optouts/13812345678").json()
    assert view == {
        "address": "+86138****5678",
        "opted_out": True,
        "entries": [
            {
                "brand": "星耀商城",
                "channel": None,
                "since": view["entries"][0]["since"],
                "source": "sms_reply",
            }
        ],
    }
    # The queued 星耀商城 message never went out; only the first one (and the other brand's) did.
    assert sum(1 for m in stack.messages("+8613812345678") if m["brand"] == "星耀商城") == 1


def test_forged_reply_is_refused_and_changes_nothing(stack: Stack) -> None:
    body = b'{"from": "+8613812345678", "text": "TD", "reference": "acme:ntf_x"}'
    r = httpx.post(
        f"{stack.api_url}/v1/inbound/simulator/replies",
        content=body,
        headers={"x-tidings-signature": "ab" * 32},
    )
    assert r.status_code == 403 and r.json()["code"] == "bad_signature"
    with stack.client() as c:
        assert c.get("/v1/optouts/13812345678").json()["opted_out"] is False


def test_optout_api_put_get_delete_with_consent(stack: Stack) -> None:
    with stack.client() as c:
        put = c.put(
            "/v1/optouts/+86 138-1234-5678", json={"brand": None, "channel": "sms", "reason": "客服来电要求"}
        )
        assert put.status_code == 200 and put.json()["opted_out"] is True
        assert c.post("/v1/notify", json=points_expiry()).json()["status"] == "suppressed"
        refused = c.request("DELETE", "/v1/optouts/13812345678", params={"channel": "sms"})
        assert refused.status_code == 422 and refused.json()["code"] == "consent_evidence_required"
        ok = c.request(
            "DELETE",
            "/v1/optouts/13812345678",
            params={"channel": "sms"},
            json={"consent_evidence": "会员APP勾选同意 2026-11-25"},
        )
        assert ok.status_code == 200 and ok.json()["opted_out"] is False
        assert c.post("/v1/notify", json=points_expiry()).json()["status"] == "queued"
        assert c.get("/v1/optouts/not-a-number").json()["code"] == "invalid_recipient"
        email = c.put("/v1/optouts/Lina@Example.com", json={})
        assert email.json()["address"] == "L***@example.com"


def test_alibaba_smsup_push_is_answered_code_zero_and_opts_out(stack: Stack) -> None:
    from gateway.api.inbound import inbound_token

    token = inbound_token(stack.settings.inbound_token, "alibaba", "acme")
    push = [
        {
            "phone_number": "13812345678",
            "content": "退订谢谢",
            "send_time": "2026-11-25 10:00:00",
            "dest_code": "1234",
            "sequence_id": 1234567890,
            "sign_name": "【星耀商城】",
        },
        {
            "phone_number": "13812340002",
            "content": "怎么兑换",
            "send_time": "2026-11-25 10:00:01",
            "dest_code": "1234",
            "sequence_id": 1234567891,
            "sign_name": "星耀商城",
        },
    ]
    url = f"{stack.api_url}/v1/inbound/alibaba/replies"
    r = httpx.post(url, params={"tenant": "acme", "token": token}, json=push)
    assert r.status_code == 200 and r.json() == {"code": 0, "msg": "接收成功"}
    again = httpx.post(
        url, params={"tenant": "acme", "token": token}, json=push
    )  # Alibaba pushes again on doubt
    assert again.json()["code"] == 0
    forged = httpx.post(url, params={"tenant": "acme", "token": "0" * 32}, json=push)
    assert forged.status_code == 403
    with stack.client() as c:
        view = c.get("/v1/optouts/13812345678").json()
        assert [(e["brand"], e["source"]) for e in view["entries"]] == [("星耀商城", "sms_reply")]
        assert c.get("/v1/optouts/13812340002").json()["opted_out"] is False


def test_twilio_reply_needs_its_signature(stack: Stack) -> None:
    from channels.twilio import twilio_signature

    form = {
        "MessageSid": "SM0123456789",
        "AccountSid": "AC0123",
        "From": "+8613812345678",
        "To": "+10000000000",
        "Body": "STOP",
    }
    path = "/v1/inbound/twilio/replies?tenant=acme&brand=%E6%98%9F%E8%80%80%E5%95%86%E5%9F%8E"
    good = twilio_signature(stack.settings.twilio_auth_token, stack.settings.public_url + path, form)
    wrong = httpx.post(stack.api_url + path, data=form, headers={"X-Twilio-Signature": "bad" + good[3:]})
    assert wrong.status_code == 403
    tampered = httpx.post(
        stack.api_url + path.replace("acme", "globex"), data=form, headers={"X-Twilio-Signature": good}
    )
    assert tampered.status_code == 403  # the tenant is part of the signed URL
    with stack.client() as c:
        assert c.get("/v1/optouts/13812345678").json()["opted_out"] is False
    ok = httpx.post(stack.api_url + path, data=form, headers={"X-Twilio-Signature": good})
    assert (
        ok.status_code == 200
        and ok.headers["content-type"].startswith("text/xml")
        and b"<Response>" in ok.content
    )
    with stack.client() as c:
        assert c.get("/v1/optouts/13812345678").json()["entries"][0]["brand"] == "星耀商城"


def test_tencent_reply_callback(stack: Stack) -> None:
    from gateway.api.inbound import inbound_token

    token = inbound_token(stack.settings.inbound_token, "tencent", "acme")
    body = {
        "extend": "",
        "mobile": "13812345678",
        "nationcode": "86",
        "sign": "星耀商城",
        "text": "TD",
        "time": 1795600000,
    }
    url = f"{stack.api_url}/v1/inbound/tencent/replies"
    assert httpx.post(url, params={"tenant": "acme", "token": "x"}, json=body).status_code == 403
    r = httpx.post(url, params={"tenant": "acme", "token": token}, json=body)
    assert r.status_code == 200 and r.json() == {"result": 0, "errmsg": "OK"}
    with stack.client() as c:
        assert c.get("/v1/optouts/13812345678").json()["entries"][0]["brand"] == "星耀商城"


def test_change_log_masks_the_address(stack: Stack) -> None:
    """Every opt-out change reaches the audit log, with the address masked and the consent recorded."""
    with stack.client() as c:
        c.put("/v1/optouts/13812345678", json={"brand": "星耀商城"})
        c.request(
            "DELETE",
            "/v1/optouts/13812345678",
            params={"brand": "星耀商城"},
            json={"consent_evidence": "门店纸质同意书 #88"},
        )

        def changes() -> list[dict[str, Any]]:
            found = c.get("/v1/audit/events", params={"address": "13812345678"}).json()["events"]
            return [e for e in found if e["type"] in ("opt_out", "opt_in")]

        log = wait_for(lambda: len(changes()) == 2 and changes())
    assert [e["type"] for e in log] == ["opt_out", "opt_in"]
    assert {e["address"] for e in log} == {"+86138****5678"}
    assert log[1]["data"]["consent_evidence"] == "门店纸质同意书 #88"
    assert str(log[0]["data"]["by"]).startswith("key_") and log[0]["data"]["source"] == "api"
    assert "13812345678" not in str(log)


def test_resubscribe_by_reply_only_when_the_policy_allows(stack_factory: object, tmp_path: object) -> None:
    from pathlib import Path

    from tests.conftest import QUIET_OFF_POLICY

    allowed = Path(str(tmp_path)) / "policy.toml"
    allowed.write_text(QUIET_OFF_POLICY + "replies_resubscribe = true\n", encoding="utf-8")
    for phone, policy, expected in (("13812340011", None, "none"), ("13812340012", str(allowed), "opted_in")):
        overrides = {} if policy is None else {"policy_path": policy}
        stack = stack_factory(**overrides)  # type: ignore[operator]
        with stack.client() as c:
            c.post("/v1/notify", json=points_expiry(phone=phone))
        sender = f"+86{phone}"
        wait_for(lambda s=stack, p=sender: s.messages(p), timeout=5)
        assert reply(stack, "TD", sender=sender).json()["gateway"]["action"] == "opted_out"
        assert (
            reply(stack, "我想订阅吗", sender=sender).json()["gateway"]["action"] == "none"
        )  # ambiguous: never
        assert reply(stack, "START", sender=sender).json()["gateway"]["action"] == expected
        # Both stacks share one Redis and its queues: the next stack's jobs are for its own worker.
        stack.stop_workers()


def test_simulator_reply_to_nothing_it_sent_belongs_to_the_dev_tenant(stack: Stack) -> None:
    answer = reply(stack, "TD", sender="+8613812349999")
    assert answer.json()["gateway"]["action"] == "opted_out"
    with stack.client() as c:  # tenant acme is not the dev tenant: its view of the number is untouched
        assert c.get("/v1/optouts/13812349999").json()["opted_out"] is False
