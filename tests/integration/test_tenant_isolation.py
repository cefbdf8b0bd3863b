"""A key of tenant A can read or change nothing of tenant B, endpoint by endpoint."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from gateway.api.auth import SCOPES
from tests.conftest import Stack, make_key, points_expiry, wait_for

# Weeks ahead: scheduled, inside the scheduling horizon (35 days).
LATER = (datetime.now(UTC) + timedelta(days=20)).isoformat()

pytestmark = pytest.mark.integration

KEY_A = "tenant-a-key-0123456789"
KEY_B = "tenant-b-key-0123456789"
TEMPLATE = {
    "category": "marketing",
    "params": {"name": {"required": True}},
    "sms": {"text": "{{ name }},会员日积分翻倍。"},
}


def test_a_key_of_one_tenant_reaches_nothing_of_another(stack: Stack) -> None:
    make_key(stack.redis_url, KEY_A, "tenant-a", list(SCOPES))
    make_key(stack.redis_url, KEY_B, "tenant-b", list(SCOPES))
    a, b = stack.client(KEY_A), stack.client(KEY_B)
    with a, b:
        # B's state: a delivered notification, a scheduled one, an opt-out, a template, an idempotency key.
        sent = b.post("/v1/notify", json=points_expiry("13800138001", idempotency_key="ledger-1")).json()[
            "id"
        ]
        later = b.post("/v1/notify", json=points_expiry("13800138002", send_at=LATER)).json()["id"]
        assert b.put("/v1/optouts/13800138003", json={"reason": "B 的会员"}).status_code == 200
        assert b.put("/v1/templates/b_only", json=TEMPLATE).status_code == 200
        wait_for(lambda: b.get(f"/v1/notifications/{sent}").json()["status"] == "delivered", timeout=10)
        wait_for(lambda: len(b.get("/v1/audit/events").json()["events"]) >= 8, timeout=10)

        # Notifications: not found, not cancellable.
        assert a.get(f"/v1/notifications/{sent}").status_code == 404
        assert a.post(f"/v1/notifications/{later}/cancel").status_code == 404
        assert b.get(f"/v1/notifications/{later}").json()["status"] == "scheduled"
        # Idempotency keys are per tenant: A's same key is a new notification, not B's replay.
        mine = a.post("/v1/notify", json=points_expiry("13800138001", idempotency_key="ledger-1"))
        assert (
            mine.status_code == 202
            and mine.json()["id"] != sent
            and "idempotent-replayed" not in mine.headers
        )
        mine_id = mine.json()["id"]
        wait_for(lambda: a.get(f"/v1/notifications/{mine_id}").json()["status"] == "delivered", timeout=10)
        # Opt-outs: A sees none of B's, changes none of B's, exports none of B's.
        assert a.get("/v1/optouts/13800138003").json()["opted_out"] is False
        assert (
            a.request("DELETE", "/v1/optouts/13800138003", json={"consent_evidence": "x"}).status_code == 404
        )
        assert b.get("/v1/optouts/13800138003").json()["opted_out"] is True
        assert "138****8003" not in a.get("/v1/optouts/export", params={"include": "addresses"}).text
        assert "138****8003" not in a.get("/v1/optouts/export").text
        assert "+8613800138003" in b.get("/v1/optouts/export", params={"include": "addresses"}).text
        # A's opt-out of the same member leaves B sending to them.
        assert a.put("/v1/optouts/13800138001", json={}).status_code == 200
        assert b.post("/v1/notify", json=points_expiry("13800138001")).json()["status"] == "queued"
        # Templates: B's own template is not A's.
        assert a.get("/v1/templates/b_only").status_code == 404
        assert "b_only" not in {t["name"] for t in a.get("/v1/templates").json()["templates"]}
        assert (
            a.post(
                "/v1/notify", json={**points_expiry(), "template": "b_only", "params": {"name": "x"}}
            ).json()["reasons"][0]["code"]
            == "template_not_found"
        )

        # Audit: A's search, export and verify cover A's chain only (A's own events settle first).
        def a_events() -> list[dict[str, object]]:
            return list(a.get("/v1/audit/events", params={"limit": 1000}).json()["events"])

        wait_for(lambda: any(e["type"] == "receipt" and e["notification_id"] == mine_id for e in a_events()))
        wait_for(lambda: a.get("/v1/audit/verify").json()["checked"] == len(a_events()))
        events = a_events()
        assert not {e["notification_id"] for e in events} & {sent, later}
        assert a.get("/v1/audit/events", params={"address": "13800138003"}).json()["events"] == []
        export = a.get("/v1/audit/export").text
        assert sent not in export and later not in export
        assert a.get("/v1/audit/verify").json() == {"ok": True, "checked": len(events)}
    # A key is bound to its tenant: nothing in a request picks another one.
    with stack.client(KEY_A) as a2:
        assert a2.get(f"/v1/notifications/{sent}", params={"tenant": "tenant-b"}).status_code == 404
