"""The provider simulator as a developer uses it: ``/messages?to=`` in any written form of a number,
a clear 400 for a ``to`` that is no address, its built-in numbers exactly as README.md's table says
(the table is read here, so the two cannot drift), replies tied to a number however it is written.

Real servers only: the simulator over HTTP, sent to through its own adapter or through a whole
gateway; where its receipts and replies are watched, a stand-in for the gateway's inbound endpoints
records what it posts.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
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
from tests.providers import Disconnected, read_body

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
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


# -- README.md's table of built-in numbers ----------------------------------------------------------------
@dataclass(frozen=True)
class Row:
    """One row of the table: the numbers it names (none: every other address) and the receipt."""

    numbers: tuple[str, ...]
    status: str
    code: str


def readme_rows() -> list[Row]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("### The provider simulator", 1)[1].split("\n## ", 1)[0]
    rows = []
    for line in section.splitlines():
        if not line.startswith("| ") or line.startswith("| number"):
            continue
        first, what = (cell.strip() for cell in line.strip().strip("|").split("|"))
        receipt = re.search(r"receipt `(\w+)` with code `([^`]+)`", what)
        assert receipt is not None, line
        rows.append(Row(tuple(re.findall(r"`(\+\d+)`", first)), receipt.group(1), receipt.group(2)))
    return rows


def samples(row: Row) -> list[str]:
    """Numbers the row speaks of: both ends of a range and one inside; for "any other", the neighbours
    just outside every range and an ordinary number."""
    if row.numbers:
        low, high = (int(n) for n in row.numbers)
        return [f"+{low}", f"+{(low + high) // 2}", f"+{high}"]
    ranges = [r.numbers for r in readme_rows() if r.numbers]
    outside = [f"+{int(lo) - 1}" for lo, _ in ranges] + [f"+{int(hi) + 1}" for _, hi in ranges]
    return [*outside, NUMBER]


def test_the_readme_table_names_the_switched_off_range_and_everything_else() -> None:
    rows = readme_rows()
    assert [len(r.numbers) for r in rows] == [2, 0], rows  # a range (from, to), then "any other"
    assert [(r.status, r.code) for r in rows] == [("undelivered", "MK:0001"), ("delivered", "DELIVERED")]


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
        try:
            body = await read_body(receive)
        except Disconnected:
            return  # the sender went away: nothing was delivered
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


# -- the built-in numbers ----------------------------------------------------------------------------------
@pytest.mark.parametrize("row", readme_rows(), ids=lambda r: r.status)
def test_built_in_numbers_in_any_written_form_get_the_receipt_the_readme_names(sim: Sim, row: Row) -> None:
    sent = {(number, form): sim.send(form) for number in samples(row) for form in written_forms(number)}

    def all_receipts() -> list[dict[str, Any] | None] | None:
        got = [sim.gateway.receipt(ref) for ref in sent.values()]
        return got if all(got) else None

    receipts = wait_for(all_receipts, timeout=10)
    got = {key: (r["status"], r["code"]) for key, r in zip(sent, receipts, strict=True)}
    assert got == dict.fromkeys(sent, (row.status, row.code))
    for number in samples(row):  # and each is found by its E.164 form, whichever form it was sent in
        found = [m["reference"] for m in sim.messages(number)]
        assert found == [ref for (n, _), ref in sent.items() if n == number], number


def test_through_the_gateway_each_built_in_number_ends_as_the_readme_says(stack: Stack) -> None:
    expected: dict[str, str] = {}
    with stack.client() as c:
        for row in readme_rows():
            for number in samples(row):
                national = written_forms(number)[5]  # 139-0000-0999: the gateway normalises it first
                answer = c.post("/v1/notify", json=points_expiry(phone=national))
                assert answer.status_code == 202, answer.text
                expected[answer.json()["id"]] = row.status

    def final() -> dict[str, str] | None:
        with stack.client() as c:
            now = {i: c.get(f"/v1/notifications/{i}").json()["status"] for i in expected}
        return now if set(now.values()) <= {"delivered", "undelivered"} else None

    assert wait_for(final, timeout=15, interval=0.2) == expected


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
