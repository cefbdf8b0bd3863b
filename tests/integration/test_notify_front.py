"""``POST /v1/notify`` is answered in front of Litestar (``NotifyFront``) in the common case; every
other case is handed to the app with the body already read. Both must answer alike."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import Stack, points_expiry

pytestmark = pytest.mark.integration


def _chunked(body: bytes) -> Iterator[bytes]:
    """A body without Content-Length (Transfer-Encoding: chunked): the front hands it to the app."""
    yield body[:10]
    yield body[10:]


def test_the_front_and_the_app_answer_a_notify_alike(stack: Stack) -> None:
    with stack.client() as c:
        fast = c.post("/v1/notify", json=points_expiry("13800138001"), headers={"X-Request-Id": "ledger-7"})
        body = httpx.Request("POST", "/", json=points_expiry("13800138002")).content
        slow = c.post("/v1/notify", content=_chunked(body), headers={"content-type": "application/json"})
        assert "content-length" not in slow.request.headers
        for answer in (fast, slow):
            assert answer.status_code == 202, answer.text
            assert answer.headers["content-type"] == "application/json"
            assert answer.json()["status"] == "queued" and answer.json()["id"].startswith("ntf_")
            assert answer.headers["x-request-id"]
        assert set(fast.json()) == set(slow.json())
        assert fast.headers["x-request-id"] == "ledger-7"
        for answer in (fast, slow):
            got = c.get(f"/v1/notifications/{answer.json()['id']}")
            assert got.status_code == 200 and got.json()["channel"] == "sms"


def test_what_the_front_does_not_take_is_answered_by_the_app_from_the_same_body(stack: Stack) -> None:
    with stack.client() as c:
        invalid = c.post(
            "/v1/notify", json={**points_expiry("13800138003"), "channel": 5}, headers={"X-Request-Id": "r-1"}
        )
        assert invalid.status_code == 422 and invalid.json()["code"] == "validation_error"
        assert [e["field"] for e in invalid.json()["errors"]] == ["channel"]
        assert invalid.headers["x-request-id"] == "r-1"
        unknown_key = httpx.post(
            f"{stack.api_url}/v1/notify",
            json=points_expiry("13800138003"),
            headers={"Authorization": "Bearer no-such-key-0123456789"},
        )
        assert unknown_key.status_code == 401 and unknown_key.json()["code"] == "unauthorized"
        assert unknown_key.headers["x-request-id"]
        # Nothing of the refused requests was accepted: the member's first notify is new.
        first = c.post("/v1/notify", json=points_expiry("13800138003"), headers={"Idempotency-Key": "k-1"})
        assert first.status_code == 202 and "idempotent-replayed" not in first.headers
        again = c.post("/v1/notify", json=points_expiry("13800138003"), headers={"Idempotency-Key": "k-1"})
        assert again.headers["idempotent-replayed"] == "true" and again.json()["id"] == first.json()["id"]
        mismatch = c.post(
            "/v1/notify",
            json={**points_expiry("13800138003"), "idempotency_key": "k-2"},
            headers={"Idempotency-Key": "k-1"},
        )
        assert mismatch.status_code == 422 and mismatch.json()["code"] == "idempotency_key_mismatch"
        too_long = c.post(
            "/v1/notify", json=points_expiry("13800138003"), headers={"Idempotency-Key": "k" * 256}
        )
        assert too_long.status_code == 422 and too_long.json()["errors"][0]["field"] == "Idempotency-Key"
