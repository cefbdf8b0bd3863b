"""Real values for the OpenAPI document's examples: what the API really sends for a points reminder.

A unit test checks each example against the schema it illustrates, so they cannot drift.
"""

from __future__ import annotations

from typing import Any

from gateway.errors import PROBLEM_TYPE, problem_document

NTF_ID = "ntf_01JDQ3V8K6W2Z9X4M7N5P0R1ST"
MASKED_PHONE = "+86138****5678"

NOTIFY_REQUEST: dict[str, Any] = {
    "to": {"phone": "13812345678"},
    "channel": "sms",
    "brand": "星耀商城",
    "template": "points_expiry",
    "params": {"name": "李女士", "points": 28600, "days": 12},
}

QUEUED: dict[str, Any] = {
    "id": NTF_ID,
    "status": "queued",
    "channel": "sms",
    "scheduled_for": None,
    "segments": 1,
    "reasons": [],
}

SCHEDULED: dict[str, Any] = {
    **QUEUED,
    "status": "scheduled",
    "scheduled_for": "2026-12-02T08:00:00+08:00",
    "reasons": [
        {
            "code": "quiet_hours",
            "detail": "marketing is held during the member's quiet hours (21:00-08:00)",
            "scheduled_for": "2026-12-02T08:00:00+08:00",
        }
    ],
}

SUPPRESSED: dict[str, Any] = {
    **QUEUED,
    "status": "suppressed",
    "segments": None,
    "reasons": [
        {"code": "opted_out", "detail": "the member opted out of messages from this brand or channel"}
    ],
}

BANNED: dict[str, Any] = {
    "code": "banned_wording",
    "detail": "absolute claims an advertisement may not make (Advertising Law art. 9(3)): 最低价",
    "terms": [{"term": "最低价", "start": 5, "end": 8, "category": "absolute", "field": "text"}],
}

CHECK_RESULT: dict[str, Any] = {
    "decision": "allow",
    "reasons": [],
    "rendered": {"text": "【星耀商城】尊敬的会员李女士,您的28600积分将于12天后清零,请尽快兑换。 拒收请回复R"},
    "segments": 1,
    "encoding": "UCS-2",
    "scheduled_for": None,
}

BATCH_REQUEST: dict[str, Any] = {
    "defaults": {"channel": "sms", "brand": "星耀商城", "template": "points_expiry"},
    "items": [
        {"to": {"phone": "13812345678"}, "params": {"name": "李女士", "points": 28600, "days": 12}},
        {"to": {"phone": "13912340001"}, "params": {"name": "王先生", "points": 3000, "days": 7}},
    ],
}

BATCH_RESULTS: dict[str, Any] = {
    "results": [
        {**QUEUED, "index": 0},
        {"index": 1, "id": None, "status": "rejected", "channel": "sms", "reasons": [BANNED]},
    ]
}

NOTIFICATION: dict[str, Any] = {
    "id": NTF_ID,
    "status": "delivered",
    "channel": "sms",
    "category": "marketing",
    "to": {"phone": MASKED_PHONE},
    "brand": "星耀商城",
    "template": "points_expiry",
    "rendered": {"text": CHECK_RESULT["rendered"]["text"]},
    "segments": 1,
    "encoding": "UCS-2",
    "scheduled_for": None,
    "send_at": None,
    "expires_at": None,
    "created_at": "2026-12-01T10:00:00.120+08:00",
    "updated_at": "2026-12-01T10:00:03.410+08:00",
    "provider": "simulator",
    "provider_message_id": "sim-7f3a9c",
    "error_code": None,
    "reasons": [],
    "fallback": [],
    "metadata": {"campaign": "2026-12-expiry"},
    "idempotency_key": "expiry-2026-12-m1001",
    "attempts": [{"n": 1, "at": "2026-12-01T10:00:00.310+08:00", "provider": "simulator", "outcome": "sent"}],
    "events": [
        {"type": "accepted", "at": "2026-12-01T10:00:00.120+08:00"},
        {
            "type": "attempt",
            "at": "2026-12-01T10:00:00.310+08:00",
            "provider": "simulator",
            "outcome": "sent",
        },
        {"type": "receipt", "at": "2026-12-01T10:00:03.410+08:00", "status": "delivered"},
    ],
}

TEMPLATE: dict[str, Any] = {
    "name": "birthday",
    "category": "marketing",
    "description": "会员生日礼",
    "params": [{"name": "name", "required": True}, {"name": "points", "required": True}],
    "channels": ["sms"],
    "variants": {"sms": {"text": "{{ name }},生日快乐!会员生日礼{{ points }}积分已到账。"}},
    "source": "tenant",
}

OPTOUT_VIEW: dict[str, Any] = {
    "address": MASKED_PHONE,
    "opted_out": True,
    "entries": [
        {"brand": "星耀商城", "channel": None, "since": "2026-11-30T21:14:05+08:00", "source": "sms_reply"}
    ],
}

IMPORT_REPORT: dict[str, Any] = {
    "imported": 2,
    "duplicates": 1,
    "invalid": [{"line": 5, "error": "not a phone number or email address: 'not-a-number'"}],
    "invalid_count": 1,
    "rows": 4,
}

AUDIT_EVENT: dict[str, Any] = {
    "seq": 1042,
    "id": "1764554400120-0",
    "at": "2026-12-01T10:00:00.120+08:00",
    "type": "accepted",
    "notification_id": NTF_ID,
    "channel": "sms",
    "address": MASKED_PHONE,
    "data": {"brand": "星耀商城", "template": "points_expiry", "category": "marketing"},
    "prev_hash": "9f2c41d0b7e3a85c6d1e0f4a3b2c1d0e9f8a7b6c5d4e3f2a1b0c9d8e7f6a5b4c",
    "hash": "4b1e7d9a0c3f5e2b8a6d4c1f0e9b7a5d3c2e1f0a9b8c7d6e5f4a3b2c1d0e9f8a",
}


DELIVERY: dict[str, Any] = {
    "id": "dlv_01JDQ3V8K6W2Z9X4M7N5P0R1SV",
    "event_id": "evt_1764554400120_0_0",
    "type": "optout.created",
    "status": "delivered",
    "attempts": 2,
    "last_status": 200,
    "last_error": None,
    "latency_ms": 41.5,
    "created_at": "2026-12-01T21:14:05+08:00",
    "last_attempt_at": "2026-12-01T21:14:11+08:00",
    "next_attempt_at": None,
}

problem = problem_document  # a problem document exactly as the API builds it


REJECTED: dict[str, Any] = {
    **problem(422, "banned_wording", "Notification rejected", BANNED["detail"]),
    "type": PROBLEM_TYPE + "rejected",
    "id": None,
    "channel": "sms",
    "reasons": [BANNED],
}

PROBLEMS: dict[int, dict[str, Any]] = {
    400: problem(400, "malformed_json", "Malformed JSON", "the JSON body is nested too deep"),
    401: problem(401, "unauthorized", "Unauthorized", "missing or unknown API key"),
    403: problem(403, "insufficient_scope", "Forbidden", "this API key lacks the scope notify"),
    404: problem(404, "not_found", "Not found", "no notification with that id"),
    409: problem(
        409,
        "idempotency_in_progress",
        "Conflict",
        "a request with this Idempotency-Key is still being processed",
    ),
    413: problem(413, "body_too_large", "Payload too large", "the body is over 1048576 bytes"),
    422: problem(
        422,
        "validation_error",
        "Invalid request",
        "channel: Expected `str`, got `int`",
        errors=[{"field": "channel", "message": "Expected `str`, got `int`"}],
    ),
    429: problem(429, "rate_limited", "Too many requests", "this API key is over 200 requests per second"),
    503: problem(503, "redis_unavailable", "Service unavailable", "state store unreachable; retry shortly"),
}
