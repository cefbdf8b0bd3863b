"""Reminder series: definitions, planning, release by the worker, exits honoured at the last moment."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from gateway.timeutil import set_clock
from tests.conftest import Stack, wait_for

pytestmark = pytest.mark.integration
SH = ZoneInfo("Asia/Shanghai")
BRAND = "星耀商城"


def quick_definition(*offsets: str, template: str = "points_expiry", window: str = "any") -> dict[str, Any]:
    """A tenant definition with steps seconds apart (the README's walk-through)."""
    return {
        "category": "marketing",
        "description": "快速演示",
        "exit_on": ["points_redeemed"],
        "steps": [
            {"name": f"s{i}", "offset": off, "template": template, "channel": "sms", "window": window}
            for i, off in enumerate(offsets, 1)
        ],
    }


def start(c: httpx.Client, phone: str, definition: str, anchor: datetime, **extra: Any) -> httpx.Response:
    body = {
        "definition": definition,
        "to": {"phone": phone},
        "brand": BRAND,
        "anchor_at": anchor.isoformat(),
        "params": {"name": "李女士", "points": 1200, "days": 3},
        **extra,
    }
    return c.post("/v1/series", json=body)


def redeem(c: httpx.Client, phone: str) -> list[str]:
    r = c.post("/v1/events", json={"type": "points_redeemed", "to": {"phone": phone}, "brand": BRAND})
    assert r.status_code == 200, r.text
    ended: list[str] = r.json()["ended"]
    return ended


def test_a_series_runs_its_steps_and_stops_on_a_redemption(stack: Stack) -> None:
    with stack.client() as c:
        r = c.put("/v1/series-definitions/quick", json=quick_definition("-PT9S", "-PT6S", "-PT3S"))
        assert r.status_code == 201, r.text
        assert [s["offset"] for s in r.json()["steps"]] == ["-PT9S", "-PT6S", "-PT3S"]
        anchor = datetime.now(SH) + timedelta(seconds=10)
        started = start(c, "13812348001", "quick", anchor, key="ledger-1")
        assert started.status_code == 201, started.text
        series = started.json()
        assert series["status"] == "active" and [s["status"] for s in series["steps"]] == ["pending"] * 3
        assert series["to"] == "+86138****8001"
        first = wait_for(lambda: stack.messages("+8613812348001"), timeout=10)
        assert len(first) == 1
        assert redeem(c, "13812348001") == [series["id"]]
        time.sleep(7)  # past the other two steps' times
        assert len(stack.messages("+8613812348001")) == 1
        view = c.get(f"/v1/series/{series['id']}").json()
        assert view["status"] == "exited" and view["end_reason"] == "exited"
        assert [s["status"] for s in view["steps"]] == ["sent", "cancelled", "cancelled"]
        assert view["steps"][0]["notification_id"].startswith("ntf_")
        assert view["steps"][1]["reasons"][0]["code"] == "exited"


def test_starting_is_idempotent_by_key(stack: Stack) -> None:
    with stack.client() as c:
        assert c.put("/v1/series-definitions/quick", json=quick_definition("-P2D", "-P1D")).status_code == 201
        anchor = datetime.now(SH) + timedelta(days=5)
        first = start(c, "13812348002", "quick", anchor, key="ledger-2")
        again = start(c, "13812348002", "quick", anchor, key="ledger-2")
        assert first.status_code == 201 and again.status_code == 200
        assert again.json()["id"] == first.json()["id"]
        other = start(c, "13812348002", "quick", anchor + timedelta(days=1), key="ledger-2")
        assert other.status_code == 422 and other.json()["code"] == "idempotency_key_reused"
        assert other.json()["status"] == 422


def local(*args: int) -> datetime:
    return datetime(*args, tzinfo=SH)


def texts(stack: Stack, phone: str) -> list[str]:
    return [str(m.get("text") or m.get("body") or "") for m in stack.messages(phone)]


def sent_at(stack: Stack, ntf_id: str) -> datetime:
    with stack.client() as c:
        view = c.get(f"/v1/notifications/{ntf_id}").json()
    return datetime.fromisoformat(view["attempts"][0]["at"])


def test_the_shipped_30_7_1_series_runs_on_a_controllable_clock(stack_factory: Callable[..., Stack]) -> None:
    stack = stack_factory(policy_path=None, lease_seconds=0.5)  # the shipped policy: quiet hours 21-08
    set_clock(local(2026, 12, 1, 9, 0).timestamp())  # a Tuesday
    anchor = local(2026, 12, 31, 23, 59, 59)
    a, b = "13812348201", "13812348202"
    with stack.client() as c:
        shown = c.get("/v1/series-definitions/points_expiry").json()
        assert [s["offset"] for s in shown["steps"]] == ["-P30D", "-P7D", "-P1D"] and shown[
            "source"
        ] == "catalog"
        one = start(c, a, "points_expiry", anchor, params={"name": "李女士", "points": 28600}).json()
        two = start(c, b, "points_expiry", anchor, params={"name": "王先生", "points": 5200}).json()
    due = [datetime.fromisoformat(s["due_at"]).astimezone(SH) for s in one["steps"]]
    # d30 (12-01 23:59:59) moves into Wednesday's first best window; d7 (Thursday 12-24 23:59:59) into
    # Friday's; d1 (window any) stays at its offset, where quiet hours will hold it until 08:00.
    assert due == [local(2026, 12, 2, 10, 0), local(2026, 12, 25, 10, 0), local(2026, 12, 30, 23, 59, 59)]
    assert [s["template"] for s in one["steps"]] == [
        "points_expiry_30d",
        "points_expiry_7d",
        "points_expiry_1d",
    ]

    set_clock(local(2026, 12, 2, 9, 59, 58).timestamp())
    time.sleep(1.0)
    assert stack.messages("+86" + a) == []
    wait_for(lambda: len(stack.messages("+86" + a)) == 1 and len(stack.messages("+86" + b)) == 1, timeout=10)
    with stack.client() as c:
        first = c.get(f"/v1/series/{one['id']}").json()["steps"][0]
        assert first["status"] == "sent"
        assert (
            local(2026, 12, 2, 10, 0)
            <= sent_at(stack, first["notification_id"])
            < local(2026, 12, 2, 10, 0, 5)
        )
        assert redeem(c, b) == [two["id"]]  # b redeems after the first notice

    set_clock(local(2026, 12, 25, 9, 59, 58).timestamp())
    wait_for(lambda: len(stack.messages("+86" + a)) == 2, timeout=10)
    set_clock(local(2026, 12, 30, 23, 59, 58).timestamp())
    with stack.client() as c:
        wait_for(lambda: c.get(f"/v1/series/{one['id']}").json()["steps"][2]["status"] == "sent", timeout=10)
        last = c.get(f"/v1/series/{one['id']}").json()
        held = c.get(f"/v1/notifications/{last['steps'][2]['notification_id']}").json()
    assert held["status"] == "scheduled" and held["reasons"][0]["code"] == "quiet_hours"
    assert datetime.fromisoformat(held["scheduled_for"]) == local(2026, 12, 31, 8, 0)
    assert len(stack.messages("+86" + a)) == 2
    set_clock(local(2026, 12, 31, 7, 59, 58).timestamp())
    wait_for(lambda: len(stack.messages("+86" + a)) == 3, timeout=10)
    assert sent_at(stack, last["steps"][2]["notification_id"]) >= local(2026, 12, 31, 8, 0)
    got = texts(stack, "+86" + a)
    assert len(set(got)) == 3 and all("28600" in t for t in got)
    assert "12月31日" in got[0] and "7天" in got[1] and "最后提醒" in got[2]
    with stack.client() as c:
        done = c.get(f"/v1/series/{one['id']}").json()
        ended = c.get(f"/v1/series/{two['id']}").json()
    assert done["status"] == "completed" and [s["status"] for s in done["steps"]] == ["sent"] * 3
    assert ended["status"] == "exited" and [s["status"] for s in ended["steps"]] == [
        "sent",
        "cancelled",
        "cancelled",
    ]
    assert len(stack.messages("+86" + b)) == 1  # never the 7-day or the last notice after redeeming


def test_opt_outs_caps_and_past_steps_are_recorded_on_the_series(stack: Stack) -> None:
    with stack.client() as c:
        assert (
            c.put(
                "/v1/series-definitions/quick", json=quick_definition("-PT6S", "-PT4S", "-PT2S")
            ).status_code
            == 201
        )
        # Started 10 days before the anchor, the 30-day step is skipped as past.
        late = start(c, "13812348301", "points_expiry", datetime.now(SH) + timedelta(days=10)).json()
        assert late["steps"][0]["status"] == "skipped" and late["steps"][0]["reasons"][0]["code"] == "past"
        assert [s["status"] for s in late["steps"][1:]] == ["pending", "pending"]

        # An opt-out after the first step suppresses the later ones (the opt-out covers them all).
        sid = start(c, "13812348302", "quick", datetime.now(SH) + timedelta(seconds=7)).json()["id"]
        wait_for(lambda: stack.messages("+8613812348302"), timeout=10)
        assert c.put("/v1/optouts/13812348302", json={}).status_code == 200
        view = wait_for(
            lambda: (v := c.get(f"/v1/series/{sid}").json())["status"] == "completed" and v, timeout=10
        )
        assert [s["status"] for s in view["steps"]] == ["sent", "suppressed", "suppressed"]
        assert {s["reasons"][0]["code"] for s in view["steps"][1:]} == {"opted_out"}

        # A member at the monthly cap: that step says frequency_cap, and the series goes on.
        for _ in range(3):
            c.post(
                "/v1/notify",
                json={
                    "to": {"phone": "13812348303"},
                    "channel": "sms",
                    "brand": BRAND,
                    "template": "points_expiry",
                    "params": {"name": "李女士", "points": 1, "days": 3},
                },
            )
        sid = start(c, "13812348303", "quick", datetime.now(SH) + timedelta(seconds=7)).json()["id"]
        view = wait_for(
            lambda: (v := c.get(f"/v1/series/{sid}").json())["status"] == "completed" and v, timeout=15
        )
        assert [s["status"] for s in view["steps"]] == ["sent", "suppressed", "suppressed"]
        assert [s["reasons"][0]["code"] for s in view["steps"][1:]] == ["frequency_cap", "frequency_cap"]


def _wait_status(c: httpx.Client, ntf_id: str, wanted: set[str]) -> None:
    wait_for(
        lambda: c.get(f"/v1/notifications/{ntf_id}").json()["status"] in wanted, timeout=10, interval=0.01
    )


@pytest.mark.slow
def test_an_exit_while_a_step_is_queued_stops_it_fifty_times_out_of_fifty(stack: Stack) -> None:
    with stack.client() as c:
        # Both steps are due as soon as the series starts (their times passed less than a minute ago).
        assert (
            c.put("/v1/series-definitions/race", json=quick_definition("-PT20S", "-PT10S")).status_code == 201
        )
        stack.faults(channel="sms", latency_ms=700)  # a slow provider: the worker is busy, steps wait
        leaked = 0
        for n in range(50):
            filler = c.post(
                "/v1/notify",
                json={
                    "to": {"phone": f"1391234{n:04d}"},
                    "channel": "sms",
                    "brand": BRAND,
                    "category": "transactional",
                    "template": "points_credited",
                    "params": {"name": "李女士", "points": 1, "balance": 2},
                },
            ).json()
            _wait_status(c, filler["id"], {"sending"})  # the worker is now inside the slow send
            phone = f"1381234{8400 + n:04d}"
            sid = start(c, phone, "race", datetime.now(SH) + timedelta(seconds=5)).json()["id"]
            view = wait_for(
                lambda sid=sid: (
                    (v := c.get(f"/v1/series/{sid}").json())["steps"][1]["status"] == "sent" and v
                ),
                timeout=10,
                interval=0.01,
            )
            queued = [s["notification_id"] for s in view["steps"]]
            assert {c.get(f"/v1/notifications/{i}").json()["status"] for i in queued} == {"queued"}
            assert redeem(c, phone) == [sid]
            _wait_status(c, filler["id"], {"sent", "delivered"})
            time.sleep(0.2)  # the worker's next job holds the steps: it must not send them
            leaked += len(stack.messages("+86" + phone))
            ended = c.get(f"/v1/series/{sid}").json()
            assert ended["status"] == "exited"
            assert [s["status"] for s in ended["steps"]] == ["cancelled", "cancelled"]
            assert {c.get(f"/v1/notifications/{i}").json()["status"] for i in queued} == {"cancelled"}
        assert leaked == 0


def test_a_step_notification_whose_series_ended_is_cancelled_at_claim(stack: Stack) -> None:
    """The last line of defence: a step accepted after its series' exit (the releaser racing the exit)
    is cancelled by the claim, which reads the series' status atomically with it."""
    import asyncio

    import msgspec

    from gateway.models import NotifyRequest
    from gateway.services import build_services
    from tests.conftest import TENANT

    with stack.client() as c:
        sid = start(c, "13812348501", "points_expiry", datetime.now(SH) + timedelta(days=40)).json()["id"]
        assert redeem(c, "13812348501") == [sid]

    async def accept_a_late_step() -> str:
        core = build_services(stack.settings, stack.redis_url)
        try:
            req = msgspec.convert(
                {
                    "to": {"phone": "13812348501"},
                    "channel": "sms",
                    "brand": BRAND,
                    "template": "points_expiry_30d",
                    "params": {"name": "李女士", "points": 1200, "expires_on": "1月10日", "days_left": 30},
                },
                NotifyRequest,
            )
            (answer,) = await core.acceptor.notify_many(TENANT, [req], [{"series": sid, "series_step": "1"}])
            body = answer.body if isinstance(answer.body, dict) else msgspec.to_builtins(answer.body)
            return str(body["id"])
        finally:
            await core.aclose()

    ntf_id = asyncio.run(accept_a_late_step())
    with stack.client() as c:
        view = wait_for(
            lambda: (v := c.get(f"/v1/notifications/{ntf_id}").json())["status"] == "cancelled" and v,
            timeout=10,
        )
    assert view["reasons"][0]["code"] == "exited"
    assert [e["type"] for e in view["events"]][-1] == "cancelled"
    time.sleep(0.3)
    assert stack.messages("+8613812348501") == []


def test_series_changes_reach_webhook_endpoints(stack: Stack) -> None:
    from gateway.api.servers import ServerThread
    from gateway.state.redisdb import free_port
    from tests.integration.test_webhooks import Receiver, subscribe

    app = Receiver()
    server = ServerThread(app, "127.0.0.1", free_port()).start_and_wait()
    try:
        subscribe(stack, f"{server.url}/hooks", ["series.started", "series.step", "series.exited"])
        with stack.client() as c:
            assert (
                c.put("/v1/series-definitions/quick", json=quick_definition("-P1D", "-PT30S")).status_code
                == 201
            )
            sid = start(c, "13812348601", "quick", datetime.now(SH) + timedelta(days=1, seconds=2)).json()[
                "id"
            ]
            wait_for(lambda: any(e["type"] == "series.step" for e in app.accepted()), timeout=10)
            assert redeem(c, "13812348601") == [sid]
        got = wait_for(lambda: (a := app.accepted()) and a[-1]["type"] == "series.exited" and a, timeout=10)
    finally:
        server.stop()
    assert [e["type"] for e in got] == ["series.started", "series.step", "series.exited"]
    assert {e["data"]["series_id"] for e in got} == {sid} and {e["data"]["to"] for e in got} == {
        "+86138****8601"
    }
    step = got[1]["data"]
    assert step["step"] == "s1" and step["status"] == "sent" and step["notification_id"].startswith("ntf_")
    assert got[2]["data"]["exit_type"] == "points_redeemed"


def test_bad_definitions_and_starts_are_refused_with_every_reason(stack: Stack) -> None:
    with stack.client() as c:
        bad = {
            "category": "marketing",
            "exit_on": ["points_redeemed"],
            "steps": [
                {"name": "a", "offset": "-P1X", "template": "points_expiry", "channel": "sms"},
                {"name": "b", "offset": "-P7D", "template": "no_such_template", "channel": "sms"},
                {"name": "c", "offset": "-P10D", "template": "points_expiry", "channel": "fax"},
            ],
        }
        r = c.put("/v1/series-definitions/bad", json=bad)
        assert r.status_code == 422 and r.json()["status"] == 422
        fields = {e["field"] for e in r.json()["errors"]}
        assert {"steps[0].offset", "steps[2].channel"} <= fields
        bad["steps"] = [
            {"name": "late", "offset": "-P1D", "template": "points_expiry", "channel": "sms"},
            {"name": "early", "offset": "-P7D", "template": "points_expiry", "channel": "sms"},
        ]
        r = c.put("/v1/series-definitions/bad", json=bad)
        assert r.status_code == 422 and "out of order" in r.json()["detail"]
        bad["steps"] = [
            {"name": "x", "offset": "-P7D", "template": "no_such_template", "channel": "sms"},
            {"name": "y", "offset": "-P1D", "template": "points_credited", "channel": "sms"},
        ]
        r = c.put("/v1/series-definitions/bad", json=bad)
        codes = [x["code"] for x in r.json()["reasons"]]
        assert r.status_code == 422 and codes == ["template_not_found", "category_mismatch"]
        assert c.get("/v1/series-definitions/bad").status_code == 404  # nothing half stored
        r = c.put(
            "/v1/series-definitions/bad", content=b"{not json", headers={"content-type": "application/json"}
        )
        assert r.status_code == 400 and r.json()["code"] == "malformed_json"

        anchor = datetime.now(SH) + timedelta(days=40)
        r = start(c, "13812348701", "no_such_definition", anchor)
        assert r.status_code == 422 and r.json()["code"] == "definition_not_found"
        r = start(c, "12345", "points_expiry", anchor)
        assert r.status_code == 422 and r.json()["code"] == "invalid_recipient"
        r = c.post(
            "/v1/series",
            json={
                "definition": "points_expiry",
                "to": {"phone": "13812348701"},
                "brand": BRAND,
                "anchor_at": anchor.isoformat(),
                "params": {"name": "李女士"},
            },
        )
        assert (
            r.status_code == 422
            and r.json()["code"] == "missing_param"
            and r.json()["reasons"][0]["params"] == ["points"]
        )
        r = start(c, "13812348701", "points_expiry", datetime.now(SH) - timedelta(days=1))
        assert r.status_code == 422 and r.json()["errors"][0]["field"] == "anchor_at"
        r = start(c, "13812348701", "points_expiry", anchor, brand="不存在的品牌")
        assert r.status_code == 422 and r.json()["code"] == "unknown_brand"
        r = c.post("/v1/events", json={"type": "points_redeemed", "to": {"phone": "12345"}})
        assert r.status_code == 422 and r.json()["code"] == "invalid_recipient"
        assert c.post("/v1/series/ser_nope/cancel").status_code == 404
        assert c.patch("/v1/series/ser_nope", json={"params": {"points": 1}}).status_code == 404
        batch = c.post(
            "/v1/series/batch",
            json={
                "defaults": {
                    "definition": "points_expiry",
                    "brand": BRAND,
                    "anchor_at": anchor.isoformat(),
                    "params": {"name": "李女士", "points": 9},
                },
                "items": [{"to": {"phone": "13812348702"}}, {"to": {"phone": "12"}}],
            },
        )
        results = batch.json()["results"]
        assert [r["http_status"] for r in results] == [201, 422]
        assert results[0]["status"] == "active" and results[1]["code"] == "invalid_recipient"


def test_patched_params_reach_later_steps_and_a_cancelled_series_sends_nothing_more(stack: Stack) -> None:
    with stack.client() as c:
        assert (
            c.put("/v1/series-definitions/quick", json=quick_definition("-PT8S", "-PT4S")).status_code == 201
        )
        anchor = datetime.now(SH) + timedelta(seconds=9)
        sid = start(
            c, "13812348801", "quick", anchor, params={"name": "李女士", "points": 1200, "days": 3}
        ).json()["id"]
        wait_for(lambda: stack.messages("+8613812348801"), timeout=10)
        patched = c.patch(f"/v1/series/{sid}", json={"params": {"points": 800}})
        assert patched.status_code == 200 and patched.json()["params"]["points"] == 800
        wait_for(lambda: len(stack.messages("+8613812348801")) == 2, timeout=10)
        first, second = texts(stack, "+8613812348801")
        assert "1200" in first and "800" in second and "1200" not in second
        assert c.post(f"/v1/series/{sid}/cancel").status_code == 409  # completed: nothing left to cancel

        other = start(c, "13812348802", "quick", datetime.now(SH) + timedelta(seconds=9)).json()["id"]
        cancelled = c.post(f"/v1/series/{other}/cancel")
        assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
        assert {s["reasons"][0]["code"] for s in cancelled.json()["steps"]} == {"series_cancelled"}
        assert c.patch(f"/v1/series/{other}", json={"params": {"points": 1}}).status_code == 409
        time.sleep(6)
        assert stack.messages("+8613812348802") == []


def test_a_series_step_can_be_an_experiment(stack: Stack) -> None:
    experiment = {
        "name": "expiry-copy-series",
        "variants": [
            {"name": "A", "template": "points_expiry", "weight": 1},
            {"name": "B", "template": "points_expiry_countdown", "weight": 1},
        ],
    }
    definition = quick_definition("-PT30S")
    definition["steps"][0] = {"name": "s1", "offset": "-PT30S", "experiment": experiment, "channel": "sms"}
    with stack.client() as c:
        bad = {
            **definition,
            "steps": [
                {
                    **definition["steps"][0],
                    "experiment": {"name": "x", "variants": [experiment["variants"][0]]},
                }
            ],
        }
        assert c.put("/v1/series-definitions/ab", json=bad).status_code == 422
        both = {**definition, "steps": [{**definition["steps"][0], "template": "points_expiry"}]}
        assert c.put("/v1/series-definitions/ab", json=both).status_code == 422
        assert c.put("/v1/series-definitions/ab", json=definition).status_code == 201, c.get("/").text
        seen = set()
        for n in range(12):
            anchor = datetime.now(SH) + timedelta(seconds=31)
            sid = start(c, f"1381234{8900 + n:04d}", "ab", anchor).json()["id"]
            view = wait_for(
                lambda sid=sid: (v := c.get(f"/v1/series/{sid}").json())["steps"][0]["notification_id"] and v,
                timeout=10,
            )
            assert (
                view["steps"][0]["experiment"] == "expiry-copy-series"
                and view["steps"][0]["template"] is None
            )
            ntf = c.get(f"/v1/notifications/{view['steps'][0]['notification_id']}").json()
            assert ntf["experiment"] == "expiry-copy-series"
            assert ntf["template"] == {"A": "points_expiry", "B": "points_expiry_countdown"}[ntf["variant"]]
            seen.add(ntf["variant"])
        assert seen == {"A", "B"}


def test_a_series_of_sms_without_a_brand_is_refused_at_the_start(stack: Stack) -> None:
    with stack.client() as c:
        body = {
            "definition": "points_expiry",
            "to": {"phone": "13812348990"},
            "anchor_at": (datetime.now(SH) + timedelta(days=40)).isoformat(),
            "params": {"name": "李女士", "points": 1},
        }
        r = c.post("/v1/series", json=body)
    assert r.status_code == 422 and r.json()["code"] == "missing_signature"
