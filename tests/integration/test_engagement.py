"""Engagement: clicks, conversions, complaints and opt-outs counted into a campaign's funnel."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.conftest import Stack, wait_for
from tests.integration.test_links import countdown, tap

pytestmark = pytest.mark.integration
BRAND = "星耀商城"
CAMPAIGN = "2026-12-countdown"


def report(stack: Stack) -> dict[str, Any]:
    with stack.client() as c:
        r = c.get(f"/v1/campaigns/{CAMPAIGN}/report")
    body: dict[str, Any] = r.json() if r.status_code == 200 else {}
    return body


def test_a_campaigns_funnel_counts_exactly_what_members_did(stack: Stack) -> None:
    phones = [f"1381235{i:04d}" for i in range(30)]
    with stack.client() as c:
        assert c.get(f"/v1/campaigns/{CAMPAIGN}/report").status_code == 404
        ids = [c.post("/v1/notify", json=countdown(p)).json()["id"] for p in phones]
        coded = c.post(
            "/v1/notify",
            json={
                "to": {"phone": "13812359999"},
                "channel": "sms",
                "brand": BRAND,
                "template": "points_expiry",
                "params": {"name": "王先生", "points": 800, "days": 3, "code": "XY2026A"},
                "metadata": {"campaign": CAMPAIGN},
            },
        ).json()["id"]
        delivered = lambda: all(  # noqa: E731
            c.get(f"/v1/notifications/{i}").json()["status"] == "delivered" for i in [*ids, coded]
        )
        wait_for(delivered, timeout=20)
        for p in phones[:12]:
            assert tap(stack, "+86" + p)["status"] == 302
        tap(stack, "+86" + phones[0])  # again: the same message, one click
        tap(stack, "+86" + phones[20], user_agent="Mozilla/5.0 (compatible; Googlebot/2.1)")  # a robot
        conversions = [
            {"type": "redeemed", "value": 20000, "to": {"phone": phones[0]}, "campaign": CAMPAIGN},
            {
                "type": "redeemed",
                "value": 10000,
                "to": {"phone": f"+86 {phones[1][:3]}-{phones[1][3:7]}-{phones[1][7:]}"},
                "campaign": CAMPAIGN,
            },
            {"type": "redeemed", "notification_id": ids[2]},
            {"type": "redeemed", "notification_id": ids[3], "value": 500},
            {"type": "redeemed", "code": "XY2026A", "value": 8000},
        ]
        answers = [c.post("/v1/conversions", json=body) for body in conversions]
        assert [a.status_code for a in answers] == [200] * 5, [a.text for a in answers]
        assert [a.json()["attributed_by"] for a in answers] == [
            "campaign",
            "campaign",
            "notification",
            "notification",
            "code",
        ]
        assert (
            answers[4].json()["notification_id"] == coded and answers[0].json()["notification_id"] == ids[0]
        )
        again = c.post("/v1/conversions", json=conversions[2])
        assert again.status_code == 200 and again.json()["first"] is False
        for body, code in [
            ({"type": "redeemed", "to": {"phone": "13900000000"}, "campaign": CAMPAIGN}, "not_attributable"),
            ({"type": "redeemed", "code": "NOPE"}, "not_attributable"),
            ({"type": "redeemed", "notification_id": "ntf_nope"}, "not_attributable"),
            ({"type": "redeemed", "code": "XY2026A", "notification_id": ids[0]}, "validation_error"),
            ({"type": "redeemed", "to": {"phone": phones[0]}}, "validation_error"),
        ]:
            r = c.post("/v1/conversions", json=body)
            assert r.status_code == 422 and r.json()["code"] == code, r.text
        complaint = c.post(
            "/v1/complaints",
            json={"to": {"phone": phones[5]}, "brand": BRAND, "source": "12321", "notification_id": ids[5]},
        )
        assert complaint.status_code == 200 and complaint.json()["opted_out"] is True
        assert c.get(f"/v1/optouts/{phones[5]}").json()["opted_out"] is True
    r = httpx.post(
        f"{stack.sim_url}/replies", json={"from": "+86" + phones[6], "text": "TD", "brand": BRAND}, timeout=10
    )
    assert r.status_code == 200

    want = {
        "accepted": 31,
        "sent": 31,
        "delivered": 31,
        "undelivered": 0,
        "failed": 0,
        "cancelled": 0,
        "clicked": 12,
        "converted": 5,
        "opted_out": 1,
        "complaints": 1,
        "value": 38500,
        "suppressed": {},
    }
    got = wait_for(lambda: (b := report(stack)) and b["totals"] == want and b, timeout=15)
    assert got["rates"]["click"] == round(12 / 31, 6) and got["rates"]["conversion"] == round(5 / 31, 6)
    assert got["rates"]["delivery"] == 1.0 and got["by_channel"]["sms"]["totals"] == want
    with stack.client() as c:
        timeline = [e["type"] for e in c.get(f"/v1/notifications/{ids[0]}").json()["events"]]
        assert timeline.count("click") == 1 and timeline.count("conversion") == 1
        assert "complaint" in [e["type"] for e in c.get(f"/v1/notifications/{ids[5]}").json()["events"]]
        assert "unsubscribed" in [e["type"] for e in c.get(f"/v1/notifications/{ids[6]}").json()["events"]]
        # A member opted out since is suppressed, and the funnel says why.
        assert c.post("/v1/notify", json=countdown(phones[6])).json()["reasons"][0]["code"] == "opted_out"
    got = wait_for(
        lambda: (b := report(stack)) and b["totals"]["suppressed"] == {"opted_out": 1} and b, timeout=15
    )
    assert got["totals"]["accepted"] == 32
