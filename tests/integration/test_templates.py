"""Templates API: list, read, put; a template that fails the content rules is refused like a notify."""

from __future__ import annotations

import pytest

from tests.conftest import Stack, make_key, points_expiry, wait_for

pytestmark = pytest.mark.integration

BIRTHDAY = {
    "category": "marketing",
    "description": "生日礼遇",
    "params": {"name": {"required": True}, "gift": {"required": True}},
    "sms": {"text": "{{ name }},生日快乐!会员生日礼{{ gift }}已到账。"},
    "push": {"title": "生日快乐", "body": "{{ name }},您的生日礼已到账"},
}


def test_catalogue_is_listed_and_readable(stack: Stack) -> None:
    with stack.client() as c:
        names = {t["name"]: t["source"] for t in c.get("/v1/templates").json()["templates"]}
        assert {"points_expiry", "points_credited", "member_day"} <= set(names)
        one = c.get("/v1/templates/points_expiry").json()
        assert one["category"] == "marketing" and {"name": "points", "required": True} in one["params"]
        assert c.get("/v1/templates/nope").json()["code"] == "template_not_found"


def test_put_then_send_with_it(stack: Stack) -> None:
    with stack.client() as c:
        r = c.put("/v1/templates/birthday", json=BIRTHDAY)
        assert r.status_code == 200 and r.json()["source"] == "tenant"
        assert "birthday" in {t["name"] for t in c.get("/v1/templates").json()["templates"]}
        sent = c.post(
            "/v1/notify",
            json=points_expiry(template="birthday", params={"name": "李女士", "gift": "500积分"}),
        )
        assert sent.status_code == 202, sent.text
    msg = wait_for(stack.messages, timeout=5)[0]
    assert msg["text"] == "【星耀商城】李女士,生日快乐!会员生日礼500积分已到账。 拒收请回复R"


def test_put_refuses_banned_wording_and_footer_on_transactional(stack: Stack) -> None:
    with stack.client() as c:
        bad = c.put("/v1/templates/promo", json={**BIRTHDAY, "push": {"title": "全網最低價", "body": "快来"}})
        assert bad.status_code == 422 and bad.json()["code"] == "banned_wording"
        assert bad.json()["reasons"][0]["terms"][0] == {
            "term": "全网最低",
            "start": 0,
            "end": 4,
            "category": "absolute",
            "field": "push.title",
        }
        tx = c.put(
            "/v1/templates/tx", json={"category": "transactional", "sms": {"text": "您的订单已发货,回TD退订"}}
        )
        assert tx.status_code == 422 and tx.json()["code"] == "unsubscribe_on_transactional"
        syntax = c.put("/v1/templates/broken", json={"sms": {"text": "{{ name "}})
        assert syntax.status_code == 422 and syntax.json()["code"] == "validation_error"
        # A template the sandbox can never render is refused when stored, not at every notify.
        for source in (
            "{{ name.__class__.__mro__ }}",
            "{{ name['__init__'] }}",
            "{{ cycler.__init__.__globals__ }}",
        ):
            unsafe = c.put("/v1/templates/sneaky", json={"sms": {"text": f"【星耀商城】{source}"}})
            assert unsafe.status_code == 422 and unsafe.json()["code"] == "validation_error", unsafe.text
            assert "sandbox" in unsafe.json()["reasons"][0]["detail"]
        assert c.get("/v1/templates/sneaky").status_code == 404
        assert c.get("/v1/templates/promo").status_code == 404


def test_templates_need_the_scope_and_stay_in_their_tenant(stack: Stack) -> None:
    make_key(stack.redis_url, "notify-only", "acme", ["notify"])
    make_key(stack.redis_url, "other-tenant", "globex", ["templates", "notify"])
    with stack.client("notify-only") as c:
        assert c.put("/v1/templates/birthday", json=BIRTHDAY).status_code == 403
    with stack.client() as c:
        assert c.put("/v1/templates/birthday", json=BIRTHDAY).status_code == 200
    with stack.client("other-tenant") as c:
        assert c.get("/v1/templates/birthday").status_code == 404


def test_what_get_answers_can_be_put_back_unchanged(stack: Stack) -> None:
    with stack.client() as c:
        assert c.put("/v1/templates/birthday", json=BIRTHDAY).status_code == 200
        first = c.get("/v1/templates/birthday").json()
        back = c.put("/v1/templates/birthday", json=first)
        assert back.status_code == 200, back.text
        assert c.get("/v1/templates/birthday").json() == first == back.json()
        # A catalogue template read and put back becomes the tenant's own, with the same content.
        shipped = c.get("/v1/templates/points_credited").json()
        own = c.put("/v1/templates/points_credited", json=shipped)
        assert own.status_code == 200, own.text
        assert {**own.json(), "source": "catalog"} == shipped
        # The derived parts must agree with the template.
        wrong = c.put("/v1/templates/birthday", json={**first, "name": "other"})
        assert wrong.status_code == 422 and wrong.json()["errors"][0]["field"] == "name"
        wrong = c.put("/v1/templates/birthday", json={**first, "channels": ["email"]})
        assert wrong.status_code == 422 and wrong.json()["errors"][0]["field"] == "channels"
        both = c.put("/v1/templates/birthday", json={**first, "sms": {"text": "{{ name }}"}})
        assert both.status_code == 422 and both.json()["errors"][0]["field"] == "variants"
