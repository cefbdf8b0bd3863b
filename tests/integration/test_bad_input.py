"""Hostile and careless callers: every bad request gets a 4xx problem+json with a code, never a 500."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from gateway.api.auth import store_key
from tests.conftest import API_KEY, Stack, make_key, points_expiry

pytestmark = pytest.mark.integration

JSON = {"content-type": "application/json"}
GOOD = points_expiry()
TEXT = {"to": {"phone": "13812345678"}, "channel": "sms", "brand": "星耀商城"}


def raw(body: bytes, **headers: str) -> dict[str, Any]:
    return {"content": body, "headers": {**JSON, **headers}}


CASES: list[tuple[str, str, str, dict[str, Any], int, str]] = [
    # (name, method, path, request kwargs, status, code)
    ("malformed json", "POST", "/v1/notify", raw(b'{"to": {'), 400, "malformed_json"),
    ("not json at all", "POST", "/v1/notify", raw(b"hello"), 400, "malformed_json"),
    ("empty body", "POST", "/v1/notify", raw(b""), 400, "malformed_json"),
    ("array body", "POST", "/v1/notify", {"json": [GOOD]}, 422, "validation_error"),
    (
        "unknown top-level field",
        "POST",
        "/v1/notify",
        {"json": {**GOOD, "priority": "high"}},
        422,
        "validation_error",
    ),
    (
        "unknown nested field",
        "POST",
        "/v1/notify",
        {"json": {**GOOD, "to": {"phone": "13812345678", "fax": "1"}}},
        422,
        "validation_error",
    ),
    (
        "phone as number",
        "POST",
        "/v1/notify",
        {"json": {**GOOD, "to": {"phone": 13812345678}}},
        422,
        "validation_error",
    ),
    ("params as list", "POST", "/v1/notify", {"json": {**GOOD, "params": [1, 2]}}, 422, "validation_error"),
    (
        "missing to",
        "POST",
        "/v1/notify",
        {"json": {k: v for k, v in GOOD.items() if k != "to"}},
        422,
        "validation_error",
    ),
    ("bad category", "POST", "/v1/notify", {"json": {**GOOD, "category": "spam"}}, 422, "validation_error"),
    (
        "naive send_at",
        "POST",
        "/v1/notify",
        {"json": {**GOOD, "send_at": "2026-12-01T10:00:00"}},
        422,
        "validation_error",
    ),
    (
        "garbage send_at",
        "POST",
        "/v1/notify",
        {"json": {**GOOD, "send_at": "tomorrow"}},
        422,
        "validation_error",
    ),
    (
        "short phone",
        "POST",
        "/v1/notify",
        {"json": {**GOOD, "to": {"phone": "12345"}}},
        422,
        "invalid_recipient",
    ),
    (
        "letters phone",
        "POST",
        "/v1/notify",
        {"json": {**GOOD, "to": {"phone": "138-ABCD-5678"}}},
        422,
        "invalid_recipient",
    ),
    (
        "landline for sms",
        "POST",
        "/v1/notify",
        {"json": {**GOOD, "to": {"phone": "010-12345678"}}},
        422,
        "invalid_recipient",
    ),
    (
        "no phone for sms",
        "POST",
        "/v1/notify",
        {"json": {**GOOD, "to": {"email": "a@example.com"}}},
        422,
        "invalid_recipient",
    ),
    (
        "bad email",
        "POST",
        "/v1/notify",
        {"json": {**GOOD, "channel": "email", "to": {"email": "not-an-email"}}},
        422,
        "invalid_recipient",
    ),
    (
        "bad timezone",
        "POST",
        "/v1/notify",
        {"json": {**GOOD, "to": {"phone": "13812345678", "timezone": "Mars/Base"}}},
        422,
        "invalid_recipient",
    ),
    (
        "unknown channel",
        "POST",
        "/v1/notify",
        {"json": {**GOOD, "channel": "fax"}},
        422,
        "unsupported_channel",
    ),
    (
        "unknown template",
        "POST",
        "/v1/notify",
        {"json": {**GOOD, "template": "nope"}},
        422,
        "template_not_found",
    ),
    (
        "missing param",
        "POST",
        "/v1/notify",
        {"json": {**GOOD, "params": {"name": "李女士"}}},
        422,
        "missing_param",
    ),
    (
        "empty text",
        "POST",
        "/v1/notify",
        {"json": {"to": {"phone": "13812345678"}, "channel": "sms", "content": {"text": ""}}},
        422,
        "validation_error",
    ),
    (
        "no content at all",
        "POST",
        "/v1/notify",
        {"json": {"to": {"phone": "13812345678"}, "channel": "sms"}},
        422,
        "validation_error",
    ),
    (
        "template and content",
        "POST",
        "/v1/notify",
        {"json": {**GOOD, "content": {"text": "hi"}}},
        422,
        "validation_error",
    ),
    (
        "text over provider max",
        "POST",
        "/v1/notify",
        {
            "json": {
                "to": {"phone": "13812345678"},
                "channel": "sms",
                "brand": "星耀商城",
                "content": {"text": "积" * 600},
            }
        },
        422,
        "content_too_long",
    ),
    (
        "oversized body",
        "POST",
        "/v1/notify",
        raw(b'{"to": {"phone": "' + b"1" * 3_000_000 + b'"}}'),
        413,
        "body_too_large",
    ),
    (
        "1,001-item batch",
        "POST",
        "/v1/notify/batch",
        {"json": {"items": [GOOD] * 1001}},
        422,
        "batch_too_large",
    ),
    ("empty batch", "POST", "/v1/notify/batch", {"json": {"items": []}}, 422, "validation_error"),
    (
        "batch without items",
        "POST",
        "/v1/notify/batch",
        {"json": {"defaults": GOOD}},
        422,
        "validation_error",
    ),
    (
        "idempotency key too long",
        "POST",
        "/v1/notify",
        {"json": GOOD, "headers": {"Idempotency-Key": "k" * 300}},
        422,
        "validation_error",
    ),
    ("unknown notification", "GET", "/v1/notifications/ntf_01JD0000000000000000000000", {}, 404, "not_found"),
    ("malformed notification id", "GET", "/v1/notifications/../../etc/passwd", {}, 404, "not_found"),
    ("unknown route", "GET", "/v1/nothing", {}, 404, "not_found"),
    ("wrong method", "DELETE", "/v1/notify", {}, 405, "method_not_allowed"),
    # Text that would read otherwise on a handset than it was checked, or start a header of its own.
    *[
        (
            f"{name} in text",
            "POST",
            "/v1/notify",
            {"json": {**TEXT, "content": {"text": f"您的积分{ch}已到账"}}},
            422,
            "invalid_content",
        )
        for name, ch in (
            ("right-to-left override", "\u202e"),
            ("left-to-right embedding", "\u202a"),
            ("first-strong isolate", "\u2068"),
            ("NUL", "\x00"),
            ("escape sequence", "\x1b[2J"),
            ("DEL", "\x7f"),
        )
    ],
    (
        "CR LF in an email subject",
        "POST",
        "/v1/notify",
        {
            "json": {
                "to": {"email": "lina@example.com"},
                "channel": "email",
                "brand": "星耀商城",
                "content": {
                    "subject": "积分到账\r\nBcc: all@example.com",
                    "text": "您好",
                    "html": "<p>您好</p>",
                },
            }
        },
        422,
        "invalid_content",
    ),
    (
        "LF in a push title",
        "POST",
        "/v1/notify",
        {
            "json": {
                "to": {"push_token": "fcm-token-0001"},
                "channel": "push",
                "brand": "星耀商城",
                "content": {"title": "积分\n到账", "text": "您好"},
            }
        },
        422,
        "invalid_content",
    ),
    (
        "unregistered brand",
        "POST",
        "/v1/notify",
        {"json": {**GOOD, "brand": "不存在的品牌"}},
        422,
        "unknown_brand",
    ),
    (
        "marketing template sent as transactional",
        "POST",
        "/v1/notify",
        {"json": {**GOOD, "category": "transactional"}},
        422,
        "category_mismatch",
    ),
    (
        "template the sandbox can never render",
        "PUT",
        "/v1/templates/sneaky",
        {"json": {"sms": {"text": "【星耀商城】{{ name.__class__.__mro__ }}"}}},
        422,
        "validation_error",
    ),
    (
        "control character in a template",
        "POST",
        "/v1/notify",
        {"json": {**GOOD, "params": {"name": "李\u202e女士", "points": 1, "days": 2}}},
        422,
        "invalid_content",
    ),
]


@pytest.mark.parametrize(
    ("name", "method", "path", "kwargs", "status", "code"), CASES, ids=[c[0] for c in CASES]
)
def test_bad_input_gets_a_problem_with_a_code(
    stack: Stack, name: str, method: str, path: str, kwargs: dict[str, Any], status: int, code: str
) -> None:
    with stack.client() as c:
        r = c.request(method, path, **kwargs)
    assert r.status_code == status, r.text[:500]
    assert r.headers["content-type"].startswith("application/problem+json")
    problem = r.json()
    assert problem["code"] == code
    assert problem["title"] and problem["detail"]
    if "reasons" in problem and path.startswith("/v1/notify"):
        # A notify rejection (API.md): a problem whose status is the number and whose type ends in
        # /rejected, with the notify answer's members beside it.
        assert problem["status"] == 422 and problem["type"].endswith("/rejected")
        assert problem["id"] is None and "channel" in problem
        assert problem["reasons"][0]["code"] == code
    else:
        assert problem["status"] == status
    assert "Traceback" not in r.text
    if code == "validation_error" and status == 422 and path == "/v1/notify" and "json" in kwargs:
        assert problem.get("errors") or problem.get("reasons")


@pytest.mark.parametrize(
    ("name", "method", "path", "kwargs", "status", "code"), CASES, ids=[c[0] for c in CASES]
)
def test_without_a_key_the_same_requests_get_401_before_the_body_is_read(
    stack: Stack, name: str, method: str, path: str, kwargs: dict[str, Any], status: int, code: str
) -> None:
    with httpx.Client(base_url=stack.api_url, timeout=30) as anonymous:
        r = anonymous.request(method, path, **kwargs)
    # Routing comes first (no such route, no such method); everything else needs the key.
    routing = name in ("unknown route", "wrong method", "malformed notification id")
    expected = (status, code) if routing else (401, "unauthorized")
    assert (r.status_code, r.json()["code"]) == expected, r.text[:300]
    assert r.json()["status"] == r.status_code and r.headers["content-type"].startswith(
        "application/problem+json"
    )


def test_validation_errors_name_the_field(stack: Stack) -> None:
    with stack.client() as c:
        r = c.post("/v1/notify", json={**GOOD, "to": {"phone": 13812345678}})
        assert r.json()["errors"][0]["field"] == "to.phone"
        r = c.post("/v1/notify", json={**GOOD, "priority": "high"})
        assert r.json()["errors"][0]["field"] == "priority"


def test_auth_missing_unknown_and_scope(stack: Stack) -> None:
    make_key(stack.redis_url, "reader-key", "acme", ["audit:read"])
    with httpx.Client(base_url=stack.api_url) as c:
        none = c.post("/v1/notify", json=GOOD)
        assert none.status_code == 401 and none.json()["code"] == "unauthorized"
        wrong = c.post("/v1/notify", json=GOOD, headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401 and wrong.json()["code"] == "unauthorized"
        basic = c.post("/v1/notify", json=GOOD, headers={"Authorization": f"Basic {API_KEY}"})
        assert basic.status_code == 401
        scoped = c.post("/v1/notify", json=GOOD, headers={"Authorization": "Bearer reader-key"})
        assert scoped.status_code == 403 and scoped.json()["code"] == "insufficient_scope"
    assert stack.messages() == []


def test_receipts_need_the_provider_signature(stack: Stack) -> None:
    body = (
        b'{"receipts": [{"reference": "acme:ntf_x", "provider_message_id": "sim-1", "status": "delivered"}]}'
    )
    with httpx.Client(base_url=stack.api_url) as c:
        r = c.post(
            "/v1/inbound/simulator/receipts", content=body, headers={**JSON, "x-tidings-signature": "00" * 32}
        )
        assert r.status_code == 403 and r.json()["code"] == "bad_signature"
        r = c.post("/v1/inbound/simulator/receipts", content=body, headers=JSON)
        assert r.status_code == 403
        r = c.post("/v1/inbound/nosuch/receipts", content=body, headers=JSON)
        assert r.status_code == 404 and r.json()["code"] == "unknown_provider"


def test_nothing_half_applied_by_rejected_requests(stack: Stack, rdb: Any) -> None:
    before = set(rdb.keys("tid:{acme}:ntf:*"))
    with stack.client() as c:
        for _, method, path, kwargs, _, _ in CASES:
            c.request(method, path, **kwargs)
    assert set(rdb.keys("tid:{acme}:ntf:*")) == before
    assert stack.messages() == []


_ = store_key


def test_send_at_further_than_the_scheduling_horizon_is_refused(stack: Stack) -> None:
    from datetime import UTC, datetime, timedelta

    with stack.client() as c:
        far = (datetime.now(UTC) + timedelta(days=36)).isoformat()
        r = c.post("/v1/notify", json={**GOOD, "send_at": far})
        assert r.status_code == 422 and r.json()["code"] == "validation_error", r.text
        assert r.json()["reasons"][0]["field"] == "send_at"
        near = (datetime.now(UTC) + timedelta(days=34)).isoformat()
        ok = c.post("/v1/notify", json={**GOOD, "send_at": near})
        assert ok.status_code == 202 and ok.json()["status"] == "scheduled", ok.text


DEEP = b'{"to": {"phone": "13812345678"}, "metadata": ' + b"[" * 1000 + b"]" * 1000 + b"}"
JSON_ENDPOINTS = [
    ("POST", "/v1/notify"),
    ("POST", "/v1/notify/batch"),
    ("POST", "/v1/compliance/check"),
    ("PUT", "/v1/templates/deep"),
    ("PUT", "/v1/optouts/13812345678"),
    ("DELETE", "/v1/optouts/13812345678"),
]


@pytest.mark.parametrize(("method", "path"), JSON_ENDPOINTS)
def test_a_body_nested_a_thousand_deep_is_refused_with_a_4xx(stack: Stack, method: str, path: str) -> None:
    headers = {"Content-Type": "application/json"}
    with httpx.Client(base_url=stack.api_url) as anonymous:
        r = anonymous.request(method, path, content=DEEP, headers=headers)
        assert r.status_code == 401 and r.json()["code"] == "unauthorized", r.text  # before decoding
    with stack.client() as c:
        r = c.request(method, path, content=DEEP, headers=headers)
        assert r.status_code == 400 and r.json()["code"] == "malformed_json", r.text
        assert r.json()["status"] == 400
