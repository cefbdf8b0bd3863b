"""The provider simulator as a developer uses it: ``/messages?to=`` in any written form of a number,
a clear 400 for a ``to`` that is no address, replies tied to a number however it is written.

Real servers only: the simulator over HTTP, sent to through its own adapter or through a whole
gateway; where its receipts and replies are watched, a stand-in for the gateway's inbound endpoints
records what it posts.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from channels.base import Message, Outcome
from channels.signing import SIGNATURE_HEADER, verify
from channels.simserver import Simulator
from channels.simulator import SimulatorAdapter
from gateway.api.servers import ServerThread
from gateway.errors import InvalidRecipient
from gateway.recipients import parse_phone
from gateway.state.redisdb import free_port
from tests.conftest import Stack, points_expiry, statuses, wait_for

pytestmark = pytest.mark.integration

SECRET = "sim-secret-for-tests"
NUMBER = "+8613800138000"
# Each written form of NUMBER that /messages?to= must find it by (passed as a query parameter).
WRITTEN = [
    "+8613800138000",
    "13800138000",
    "8613800138000",
    "008613800138000",
    "+86 138 0013 8000",
    "138-0013-8000",
    "138 0013 8000",
    "(+86)13800138000",
    "(+86) 138-0013-8000",
    " +86 138 0013 8000 ",
]
# The same, as query strings typed by hand: %2B, a bare + (curl users), %20 and + for spaces.
RAW_QUERIES = [
    "to=%2B8613800138000",
    "to=+8613800138000",
    "to=%2B86%20138%200013%208000",
    "to=%2B86+138+0013+8000",
    "to=(%2B86)13800138000",
    "to=138-0013-8000",
    "to=13800138000&to=8613800138000",  # the last value counts, as before
]


def written_forms(e164: str) -> list[str]:
    """A Chinese mobile number written the ways people write it."""
    nsn = e164.removeprefix("+86")
    spaced = f"{nsn[:3]} {nsn[3:7]} {nsn[7:]}"
    return [e164, nsn, f"86{nsn}", f"0086{nsn}", f"+86 {spaced}", spaced.replace(" ", "-"), f"(+86){nsn}"]


# -- a simulator alone, with a stand-in for the gateway's inbound endpoints ------------------------------
@dataclass
class GatewayStandIn:
    """Takes the simulator's posts to /v1/inbound/simulator/* and keeps them (if signed, as the gateway
    would: 401 otherwise, and the simulator posts the receipts again)."""

    receipts: list[dict[str, Any]] = field(default_factory=list)
    replies: list[dict[str, Any]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            msg = await receive()
            body += msg.get("body", b"")
            if not msg.get("more_body"):
                break
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        status = 200 if verify(SECRET, body, headers.get(SIGNATURE_HEADER)) else 401
        if status == 200:
            with self._lock:
                if scope["path"] == "/v1/inbound/simulator/receipts":
                    self.receipts.extend(json.loads(body)["receipts"])
                elif scope["path"] == "/v1/inbound/simulator/replies":
                    self.replies.append(json.loads(body))
        raw = json.dumps({"ok": status == 200}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-length", b"%d" % len(raw))],
            }
        )
        await send({"type": "http.response.body", "body": raw})

    def receipt(self, reference: str) -> dict[str, Any] | None:
        with self._lock:
            return next((r for r in self.receipts if r["reference"] == reference), None)


@dataclass
class Sim:
    url: str
    gateway: GatewayStandIn
    sent: int = 0

    def send(self, to: str, channel: str = "sms") -> str:
        """Send one message through the simulator's own adapter; its reference."""
        self.sent += 1
        reference = f"acme:ntf_sim{self.sent:04d}"
        message = Message(reference=reference, tenant="acme", channel=channel, to=to, text="您的积分即将到期")

        async def run() -> Outcome:
            adapter = SimulatorAdapter(self.url, SECRET)
            try:
                return (await adapter.send(message)).outcome
            finally:
                await adapter.aclose()

        assert asyncio.run(run()) is Outcome.SENT
        return reference

    def get(self, query: str) -> httpx.Response:
        return httpx.get(f"{self.url}/messages?{query}", timeout=5)

    def messages(self, to: str) -> list[dict[str, Any]]:
        r = httpx.get(f"{self.url}/messages", params={"to": to}, timeout=5)
        assert r.status_code == 200, r.text
        return r.json()  # type: ignore[no-any-return]


@pytest.fixture
def sim() -> Iterator[Sim]:
    gateway, gw_port, sim_port = GatewayStandIn(), free_port(), free_port()
    gw = ServerThread(gateway, "127.0.0.1", gw_port).start_and_wait()
    simulator = Simulator(gw.url, SECRET, receipt_interval=0.01)
    server = ServerThread(simulator, "127.0.0.1", sim_port).start_and_wait()
    yield Sim(server.url, gateway)
    server.stop()
    gw.stop()


# -- /messages?to= -----------------------------------------------------------------------------------------
def test_messages_to_finds_what_the_gateway_sent_whatever_way_the_number_is_written(stack: Stack) -> None:
    with stack.client() as c:
        ntf_id = c.post("/v1/notify", json=points_expiry(phone="138 0013 8000")).json()["id"]
    wait_for(lambda: statuses(stack, [ntf_id]) == {"delivered": 1}, timeout=10)
    for form in WRITTEN:
        found = stack.messages(form)
        assert [(m["to"], m["reference"].endswith(ntf_id)) for m in found] == [(NUMBER, True)], form
    for query in RAW_QUERIES:
        r = httpx.get(f"{stack.sim_url}/messages?{query}", timeout=5)
        assert r.request.url.query == query.encode()  # sent as typed
        assert r.status_code == 200 and [m["to"] for m in r.json()] == [NUMBER], query
    assert stack.messages("13800138001") == []  # a neighbour received nothing


def test_a_bare_plus_in_the_query_is_a_plus_for_numbers_of_every_country(sim: Sim) -> None:
    sim.send("+14155550100")
    sim.send("+8613800138000")
    # Form decoding would make the + a space and read 14155550100 as a (non-existent) Chinese number.
    for query in ("to=+14155550100", "to=%2B14155550100", "to=%2B1%20415%20555%200100", "to=+1+415-555-0100"):
        r = sim.get(query)
        assert r.status_code == 200 and [m["to"] for m in r.json()] == ["+14155550100"], query


def test_a_number_sent_in_another_form_is_found_by_each_form(sim: Sim) -> None:
    # A provider is handed whatever a client wrote; the simulator files it by the number.
    references = [sim.send(form) for form in written_forms(NUMBER)]
    for form in [*WRITTEN, *written_forms(NUMBER)]:
        assert [m["reference"] for m in sim.messages(form)] == references, form


def test_a_number_in_full_width_digits_is_read_as_the_api_reads_it(sim: Sim) -> None:
    sim.send(NUMBER)
    full_width = "１３８００１３８０００"
    r = sim.get(f"to={full_width}")
    try:
        api_reads = parse_phone(full_width, "CN").e164
    except InvalidRecipient as exc:
        # The API refuses the form: so does the simulator, with the API's reason, and says why.
        assert r.status_code == 400, r.text
        assert r.json()["code"] == "invalid_recipient"
        assert str(exc) in r.json()["message"] and "full-width" in r.json()["message"]
    else:
        assert r.status_code == 200 and [m["to"] for m in r.json()] == [api_reads]


def test_emails_match_whatever_their_case_and_push_tokens_exactly(sim: Sim) -> None:
    mail = sim.send("Lina.Wang@Example.COM", channel="email")
    for form in ("lina.wang@example.com", "LINA.WANG@EXAMPLE.COM", " Lina.Wang@example.com "):
        assert [m["reference"] for m in sim.messages(form)] == [mail], form
    token = sim.send("fcm-Token-AbC123", channel="push")
    assert [m["reference"] for m in sim.messages("fcm-Token-AbC123")] == [token]
    assert sim.messages("fcm-token-abc123") == []  # a token is a device's secret, not case-folded


@pytest.mark.parametrize(
    "query",
    [
        "to=12345",
        "to=%2B86",
        "to=138001380001234",
        "to=%2B86%20138%200013%20800",
        "to=lina@",
        "to=lina@example",
        "to=@example.com",
        "to=",
        "to=%20%20",
        "to",
    ],
)
def test_a_to_that_is_no_address_is_a_400_with_a_code(sim: Sim, query: str) -> None:
    sim.send(NUMBER)
    r = sim.get(query)
    assert r.status_code == 400, r.text
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert body["code"] == "invalid_recipient" and body["message"].startswith("to: "), body


# -- replies -----------------------------------------------------------------------------------------------
def test_a_reply_is_tied_to_the_last_message_to_its_number_however_it_is_written(sim: Sim) -> None:
    sim.send("+8613800138000")
    last = sim.send("138-0013-8000")
    other = sim.send("+8613800138001")
    for sender in ("138 0013 8000", "+8613800138000", "(+86)13800138000"):
        r = httpx.post(f"{sim.url}/replies", json={"from": sender, "text": "TD"}, timeout=5)
        assert r.status_code == 200 and r.json()["forwarded"], r.text
    assert [p["reference"] for p in sim.gateway.replies] == [last] * 3
    assert other not in {p["reference"] for p in sim.gateway.replies}
