"""Events out: endpoints receive signed deliveries, verified with the Standard Webhooks library."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from standardwebhooks import Webhook, WebhookVerificationError

from gateway.api.servers import ServerThread
from gateway.state.redisdb import free_port
from tests.conftest import Stack, points_expiry, wait_for
from tests.providers import Disconnected, read_body

pytestmark = pytest.mark.integration


@dataclass
class Receiver:
    """A real HTTP endpoint: keeps every delivery; ``answers`` says what to answer next (then 200)."""

    answers: list[int] = field(default_factory=list)
    got: list[tuple[dict[str, str], bytes, int]] = field(default_factory=list)
    delay: float = 0.0
    in_flight: list[float] = field(default_factory=list)  # when each request not yet answered came in
    _lock: threading.Lock = field(default_factory=threading.Lock)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        try:
            body = await read_body(receive)
        except Disconnected:
            return  # the sender went away: nothing was delivered
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        if self.delay:
            import asyncio

            came = time.monotonic()
            with self._lock:
                self.in_flight.append(came)
            await asyncio.sleep(self.delay)
            with self._lock:
                self.in_flight.remove(came)
        with self._lock:
            status = self.answers.pop(0) if self.answers else 200
            self.got.append((headers, body, status))
        await send(
            {"type": "http.response.start", "status": status, "headers": [(b"content-type", b"text/plain")]}
        )
        await send({"type": "http.response.body", "body": b"ok"})

    def accepted(self) -> list[dict[str, Any]]:
        """The events answered 2xx, in arrival order."""
        with self._lock:
            return [json.loads(b) for _, b, s in self.got if 200 <= s < 300]


@pytest.fixture
def receiver() -> Iterator[tuple[Receiver, str]]:
    app = Receiver()
    server = ServerThread(app, "127.0.0.1", free_port()).start_and_wait()
    yield app, f"{server.url}/hooks"
    server.stop()


def subscribe(stack: Stack, url: str, events: list[str], **extra: Any) -> dict[str, Any]:
    with stack.client() as c:
        r = c.post("/v1/webhooks", json={"url": url, "events": events, **extra})
    assert r.status_code == 201, r.text
    body: dict[str, Any] = r.json()
    assert body["secret"].startswith("whsec_") and body["enabled"] is True
    return body


def reply(stack: Stack, sender: str, text: str) -> None:
    r = httpx.post(
        f"{stack.sim_url}/replies", json={"from": sender, "text": text, "brand": "星耀商城"}, timeout=10
    )
    r.raise_for_status()


def of_type(app: Receiver, kind: str) -> list[dict[str, Any]]:
    return [e for e in app.accepted() if e["type"] == kind]


def test_deliveries_are_signed_per_the_standard_and_a_td_reply_arrives_within_two_seconds(
    stack: Stack, receiver: tuple[Receiver, str]
) -> None:
    app, url = receiver
    endpoint = subscribe(stack, url, ["*"])
    verifier = Webhook(endpoint["secret"])
    with stack.client() as c:
        sent = c.post("/v1/notify", json=points_expiry(phone="13812347001", metadata={"campaign": "2026-12"}))
        assert sent.status_code == 202
    ntf_id = sent.json()["id"]
    delivered = wait_for(lambda: of_type(app, "notification.delivered"), timeout=15)
    assert (
        delivered[0]["data"]["notification_id"] == ntf_id and delivered[0]["data"]["to"] == "+86138****7001"
    )
    assert [e["type"] for e in app.accepted() if e["data"].get("notification_id") == ntf_id][:1] == [
        "notification.accepted"
    ]
    started = time.monotonic()
    reply(stack, "+8613812347001", "TD")
    wait_for(lambda: of_type(app, "optout.created") and of_type(app, "reply.received"), timeout=2)
    assert time.monotonic() - started < 2.0
    (optout,) = of_type(app, "optout.created")
    (answer,) = of_type(app, "reply.received")
    # Addresses are masked: this endpoint did not ask for them.
    assert optout["data"]["address"] == "+86138****7001" and optout["data"]["source"] == "sms_reply"
    assert answer["data"] == {
        "from": "+86138****7001",
        "text": "TD",
        "brand": "星耀商城",
        "intent": "opt_out",
        "action": "opted_out",
    }
    for headers, body, _ in app.got:
        event = verifier.verify(body, headers)  # the spec's own library
        assert event["id"] == headers["webhook-id"] and event["tenant"] == "acme"
        with pytest.raises(WebhookVerificationError):
            verifier.verify(body.replace(b"+86138****", b"+86139****"), headers)
    assert "13812347001" not in b"".join(b for _, b, _ in app.got).decode()


def test_an_endpoint_that_asks_for_addresses_gets_them_and_a_reply_that_is_not_an_opt_out(
    stack: Stack, receiver: tuple[Receiver, str]
) -> None:
    app, url = receiver
    subscribe(stack, url, ["optout.created", "reply.received"], include_addresses=True)
    with stack.client() as c:  # a reply comes back on the tenant's message
        assert c.post("/v1/notify", json=points_expiry(phone="13812347002")).status_code == 202
    wait_for(lambda: stack.messages("+8613812347002"), timeout=10)
    reply(stack, "+8613812347002", "1")  # choosing a redemption option
    reply(stack, "+8613812347002", "退订")
    wait_for(lambda: len(app.accepted()) == 3, timeout=10)
    kinds = [(e["type"], e["data"].get("intent")) for e in app.accepted()]
    assert kinds == [("reply.received", "other"), ("optout.created", None), ("reply.received", "opt_out")]
    assert {e["data"].get("address") or e["data"].get("from") for e in app.accepted()} == {"+8613812347002"}


def test_a_failing_endpoint_gets_everything_in_order_once_it_recovers_and_410_disables_it(
    stack_factory: Callable[..., Stack], receiver: tuple[Receiver, str]
) -> None:
    stack = stack_factory(workers=1)
    app, url = receiver
    app.answers = [500, 503, 500, 429]
    endpoint = subscribe(stack, url, ["optout.created", "optout.removed"])
    member = "+8613812347003"
    with stack.client() as c:
        for n in range(3):  # out, back in, out again: the order matters
            assert c.put(f"/v1/optouts/{member}", json={"reason": f"第{n}次"}).status_code == 200
            r = c.request("DELETE", f"/v1/optouts/{member}", json={"consent_evidence": "门店签字"})
            assert r.status_code == 200

    # While the endpoint fails, the backlog shows on the metrics, by endpoint id (no URL, no tenant).
    def scrape() -> str:
        return httpx.get(f"{stack.api_url}/metrics", timeout=5).text

    backlog = f'tidings_webhook_backlog{{endpoint="{endpoint["id"]}"}}'
    wait_for(
        lambda: any(
            line.startswith(backlog) and float(line.split()[-1]) >= 1 for line in scrape().splitlines()
        ),
        timeout=10,
    )
    assert "127.0.0.1" not in "".join(line for line in scrape().splitlines() if "webhook" in line)
    wait_for(lambda: len(app.accepted()) == 6, timeout=20)
    assert [e["type"] for e in app.accepted()] == ["optout.created", "optout.removed"] * 3
    assert 'tidings_webhook_deliveries_total{outcome="retry"}' in scrape()
    assert len({e["id"] for e in app.accepted()}) == 6
    # The first event was retried after each failure, with the same webhook-id.
    first_id = app.got[0][0]["webhook-id"]
    assert [h["webhook-id"] for h, _, _ in app.got[:5]] == [first_id] * 5
    with stack.client() as c:
        log = c.get(f"/v1/webhooks/{endpoint['id']}/deliveries").json()["deliveries"]
        assert log[-1]["attempts"] == 5 and log[-1]["status"] == "delivered" and log[-1]["last_status"] == 200
        # 410 Gone: the endpoint is disabled, said so, and gets nothing more.
        app.answers = [410]
        c.put(f"/v1/optouts/{member}", json={})
        wait_for(lambda: c.get(f"/v1/webhooks/{endpoint['id']}").json()["enabled"] is False, timeout=10)
        view = c.get(f"/v1/webhooks/{endpoint['id']}").json()
        assert "410" in view["disabled_reason"]
        before = len(app.got)
        c.request("DELETE", f"/v1/optouts/{member}", json={"consent_evidence": "门店签字"})
        time.sleep(1.0)
        assert len(app.got) == before


def test_endpoints_inside_the_network_are_refused_outside_dev_mode(
    stack_factory: Callable[..., Stack],
) -> None:
    stack = stack_factory(workers=0, webhook_allow_private=False)
    with stack.client() as c:
        for url in (
            "http://127.0.0.1:8080/hooks",
            "http://169.254.169.254/latest/meta-data/",
            "http://[::1]/hooks",
            "http://10.0.0.8/hooks",
            "http://localhost/hooks",
        ):
            r = c.post("/v1/webhooks", json={"url": url, "events": ["*"]})
            assert r.status_code == 422 and r.json()["code"] == "webhook_url_forbidden", (url, r.text)
        for url, code in (
            ("ftp://crm.example.cn/x", "validation_error"),
            ("https://user:pw@crm.example.cn/", "validation_error"),
        ):
            r = c.post("/v1/webhooks", json={"url": url, "events": ["*"]})
            assert r.status_code == 422 and r.json()["code"] == code, r.text
        r = c.post(
            "/v1/webhooks", json={"url": "https://crm.example.cn/x", "events": ["notification.opened"]}
        )
        assert r.status_code == 422 and r.json()["errors"][0]["field"] == "events"
        assert c.get("/v1/webhooks").json() == {"webhooks": []}


def test_rotation_signs_with_both_secrets_and_the_test_event_and_manual_retry(
    stack: Stack, receiver: tuple[Receiver, str]
) -> None:
    app, url = receiver
    endpoint = subscribe(stack, url, ["reply.received"])
    with stack.client() as c:
        rotated = c.post(f"/v1/webhooks/{endpoint['id']}/rotate-secret").json()
        assert rotated["secret"].startswith("whsec_") and rotated["secret"] != endpoint["secret"]
        assert rotated["previous_valid_until"]
        queued = c.post(f"/v1/webhooks/{endpoint['id']}/test")
        assert queued.status_code == 202
        wait_for(lambda: app.got, timeout=10)
        headers, body, _ = app.got[0]
        assert (
            json.loads(body)["type"] == "webhook.test" and len(headers["webhook-signature"].split(" ")) == 2
        )
        for secret in (endpoint["secret"], rotated["secret"]):
            Webhook(secret).verify(body, headers)  # either secret verifies during the grace period
        # A delivery that failed for good can be sent again by hand.
        app.answers = [400]
        assert c.post("/v1/notify", json=points_expiry(phone="13812347004")).status_code == 202
        wait_for(lambda: stack.messages("+8613812347004"), timeout=10)
        reply(stack, "+8613812347004", "1")
        log_url = f"/v1/webhooks/{endpoint['id']}/deliveries"
        failed = wait_for(
            lambda: [d for d in c.get(log_url).json()["deliveries"] if d["status"] == "failed"], timeout=10
        )
        assert failed[0]["last_status"] == 400 and failed[0]["attempts"] == 1
        again = c.post(f"{log_url}/{failed[0]['id']}/retry")
        assert again.status_code == 202, again.text
        wait_for(lambda: of_type(app, "reply.received"), timeout=10)
        assert c.post(f"{log_url}/{failed[0]['id']}/retry").status_code in (202, 409)
        # Other tenants' keys see nothing of it; without the admin scope, nothing at all.
        assert c.get("/v1/webhooks/whk_nosuch").status_code == 404


def test_the_readme_walk_through_with_the_simulator_as_the_receiver(stack: Stack) -> None:
    endpoint = subscribe(stack, f"{stack.sim_url}/webhooks", ["*"], description="试用")
    with stack.client() as c:
        assert c.post("/v1/notify", json=points_expiry()).status_code == 202
    wait_for(lambda: stack.messages("+8613812345678"), timeout=10)
    reply(stack, "+8613812345678", "TD")

    def kinds() -> list[str]:
        return [d["event"]["type"] for d in httpx.get(f"{stack.sim_url}/webhooks", timeout=5).json()]

    wanted = {
        "notification.accepted",
        "notification.sent",
        "notification.delivered",
        "reply.received",
        "optout.created",
    }
    wait_for(lambda: wanted <= set(kinds()), timeout=15)
    verifier = Webhook(endpoint["secret"])
    for kept in httpx.get(f"{stack.sim_url}/webhooks", timeout=5).json():
        assert set(kept["headers"]) == {"webhook-id", "webhook-timestamp", "webhook-signature"}
        assert verifier.verify(kept["body"], kept["headers"]) == kept["event"]


def test_a_slow_endpoint_does_not_slow_another_tenants_deliveries(
    stack_factory: Callable[..., Stack], receiver: tuple[Receiver, str]
) -> None:
    from tests.conftest import make_key

    stack = stack_factory(workers=1, webhook_timeout_seconds=2.0)
    fast, fast_url = receiver
    slow = Receiver(delay=5.0)  # past the time-out: every delivery to it times out
    server = ServerThread(slow, "127.0.0.1", free_port()).start_and_wait()
    try:
        make_key(stack.redis_url, "other-tenant-key-0001", "beta", ["admin", "optouts"])
        subscribe(stack, f"{server.url}/slow", ["optout.created"])
        with httpx.Client(
            base_url=stack.api_url, headers={"Authorization": "Bearer other-tenant-key-0001"}, timeout=10
        ) as beta:
            r = beta.post("/v1/webhooks", json={"url": fast_url, "events": ["optout.created"]})
            assert r.status_code == 201
            with stack.client() as acme:
                for i in range(20):  # the slow tenant's members, each on a lane that now waits
                    acme.put(f"/v1/optouts/+86138123480{i:02d}", json={})
            started = time.monotonic()
            for i in range(5):
                beta.put(f"/v1/optouts/+86139123480{i:02d}", json={})
            wait_for(lambda: len(fast.accepted()) == 5, timeout=10)
            assert time.monotonic() - started < 2.0, "the other tenant's deliveries waited for the slow one"
    finally:
        server.stop()


@pytest.mark.slow
def test_a_worker_killed_mid_delivery_loses_nothing(
    stack_factory: Callable[..., Stack], receiver: tuple[Receiver, str]
) -> None:
    import os
    import signal
    import subprocess
    import sys

    from tests.conftest import ROOT

    stack = stack_factory(workers=0)
    app, url = receiver
    app.delay = 0.3  # deliveries are in flight most of the time
    subscribe(stack, url, ["optout.created"])
    members = [f"+86138123490{i:02d}" for i in range(40)]
    with stack.client() as c:
        for member in members:
            assert c.put(f"/v1/optouts/{member}", json={}).status_code == 200
    env = {
        **os.environ,
        "TIDINGS_REDIS_URL": stack.redis_url,
        "TIDINGS_SIMULATOR_URL": stack.sim_url,
        "TIDINGS_POLICY_PATH": str(stack.settings.policy_path),
        "TIDINGS_AUDIT_URL": stack.settings.audit_url,
        "TIDINGS_WEBHOOK_ALLOW_PRIVATE": "true",
        "TIDINGS_WEBHOOK_RETRY_SECONDS": "0.2,0.2,0.4",
        "TIDINGS_WEBHOOK_LANES": "4",
        "TIDINGS_LOG_LEVEL": "WARNING",
    }

    def worker() -> subprocess.Popen[bytes]:
        return subprocess.Popen([sys.executable, "-m", "gateway.cli", "worker"], cwd=ROOT, env=env)

    first = worker()
    try:
        # Kill while the endpoint holds a delivery (just after a round of answers, none may be out).
        wait_for(
            lambda: len(app.got) >= 6 and any(time.monotonic() - t < 0.1 for t in list(app.in_flight)),
            timeout=30,
            interval=0.005,
        )
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(10)
    assert len(app.accepted()) < len(members), "everything arrived before the kill"
    second = worker()  # takes over once the first one's leases lapse
    try:
        wait_for(
            lambda: (
                {e["data"]["address"] for e in app.accepted()} >= {m[:6] + "****" + m[-4:] for m in members}
            ),
            timeout=60,
        )
    finally:
        second.send_signal(signal.SIGTERM)
        second.wait(20)
    by_id: dict[str, list[bytes]] = {}
    for headers, body, _ in app.got:
        by_id.setdefault(headers["webhook-id"], []).append(body)
    # Every member's opt-out arrived. Those in flight when the worker died were sent again by the
    # next one, with the same id and the same body (the receiver deduplicates by webhook-id).
    assert len({e["id"] for e in app.accepted()}) == len(members)
    assert any(len(bodies) > 1 for bodies in by_id.values()), "nothing was in flight at the kill"
    assert all(len(set(bodies)) == 1 for bodies in by_id.values())


def test_an_endpoint_failing_past_the_last_retry_is_disabled_and_the_audit_log_says_so(
    stack: Stack, receiver: tuple[Receiver, str]
) -> None:
    app, url = receiver
    app.answers = [503] * 50
    endpoint = subscribe(stack, url, ["optout.created"])
    with stack.client() as c:
        c.put("/v1/optouts/+8613812347005", json={})
        # The test schedule: five retries (0.2 s to 0.8 s apart), then the endpoint is disabled.
        wait_for(lambda: c.get(f"/v1/webhooks/{endpoint['id']}").json()["enabled"] is False, timeout=15)
        view = c.get(f"/v1/webhooks/{endpoint['id']}").json()
        assert "failed 6 times" in view["disabled_reason"]
        (delivery,) = c.get(f"/v1/webhooks/{endpoint['id']}/deliveries").json()["deliveries"]
        assert (delivery["status"], delivery["attempts"], delivery["last_status"]) == ("failed", 6, 503)
        assert len(app.got) == 6
        changes = wait_for(
            lambda: [
                e["data"]
                for e in c.get("/v1/audit/events", params={"type": "webhook_changed"}).json()["events"]
                if e["data"]["change"] == "disabled"
            ],
            timeout=10,
        )
        assert changes[0]["endpoint"] == endpoint["id"] and changes[0]["by"] == "dispatcher"
        # Turned back on, it receives what comes next.
        app.answers = []
        assert c.patch(f"/v1/webhooks/{endpoint['id']}", json={"enabled": True}).json()["enabled"] is True
        c.put("/v1/optouts/+8613812347006", json={})
        wait_for(lambda: of_type(app, "optout.created"), timeout=10)
