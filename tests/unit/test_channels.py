from __future__ import annotations

import asyncio
import json
import random

import httpx
import pytest

from channels import Outcome
from channels.base import Message
from channels.routing import Provider, Route, Router
from channels.signing import sign, verify
from channels.simulator import SimulatorAdapter
from channels.urls import parse_provider_url
from channels.webhook import Webhook
from gateway.delivery.outcomes import backoff_delay
from gateway.ids import new_id

MSG = Message(
    reference="acme:ntf_1", tenant="acme", channel="sms", to="+8613812345678", text="【星耀商城】您好"
)


def send_with(handler: httpx.MockTransport) -> object:
    adapter = SimulatorAdapter("http://sim", "s3cret", transport=handler)

    async def run() -> object:
        try:
            return await adapter.send(MSG)
        finally:
            await adapter.aclose()

    return asyncio.run(run())


def test_sent_carries_signature_and_reference() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"provider_message_id": "sim-1"})

    result = send_with(httpx.MockTransport(handler))
    assert result.outcome is Outcome.SENT and result.provider_message_id == "sim-1"  # type: ignore[attr-defined]
    body = seen[0].content
    assert verify("s3cret", body, seen[0].headers["x-tidings-signature"])
    assert json.loads(body)["reference"] == "acme:ntf_1"


@pytest.mark.parametrize(
    ("status", "payload", "outcome", "code"),
    [
        (500, {"code": "internal_error"}, Outcome.RETRY, "internal_error"),
        (503, None, Outcome.RETRY, "http_503"),
        (429, {"code": "throttled"}, Outcome.RETRY, "throttled"),
        (400, {"code": "invalid_number"}, Outcome.REJECTED, "invalid_number"),
        (401, {"code": "bad_signature"}, Outcome.REJECTED, "bad_signature"),
    ],
)
def test_answers_map_to_outcomes(status: int, payload: object, outcome: Outcome, code: str) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return (
            httpx.Response(status, json=payload, headers={"retry-after": "3"})
            if payload
            else httpx.Response(status)
        )

    result = send_with(httpx.MockTransport(handler))
    assert result.outcome is outcome and result.code == code  # type: ignore[attr-defined]
    if status == 429:
        assert result.retry_after == 3.0  # type: ignore[attr-defined]


def test_transport_trouble_is_a_retry_not_an_exception() -> None:
    def timeout(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("slow", request=request)

    def refused(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    assert send_with(httpx.MockTransport(timeout)).code == "timeout"  # type: ignore[attr-defined]
    assert send_with(httpx.MockTransport(refused)).outcome is Outcome.RETRY  # type: ignore[attr-defined]


def test_router_orders_by_priority_shares_by_weight_and_refuses_bad_routes() -> None:
    def provider(name: str) -> Provider:
        return Provider(name, SimulatorAdapter("http://sim", "x", name=name))

    providers = {n: provider(n) for n in ("a", "b", "c")}
    router = Router(
        providers,
        {"sms": [Route("c", priority=1), Route("a", weight=3.0), Route("b", weight=1.0)]},
        rng=random.Random(5),
    )
    firsts = [router.candidates("sms")[0].name for _ in range(4000)]
    assert all(router.candidates("sms")[-1].name == "c" for _ in range(50))  # lower priority last
    assert 0.70 < firsts.count("a") / len(firsts) < 0.80  # weight 3 of 4
    assert router.candidates("fax") == [] and router.channels() == ["sms"]
    with pytest.raises(ValueError, match="unknown provider"):
        Router(providers, {"sms": [Route("nope")]})
    sms_only = Provider("sms_only", Webhook(parse_provider_url("webhook://:s@h/?channels=sms", environ={})))
    with pytest.raises(ValueError, match="cannot carry push"):
        Router({"sms_only": sms_only}, {"push": [Route("sms_only")]})
    with pytest.raises(ValueError, match="weight"):
        Router(providers, {"sms": [Route("a", weight=0)]})
    assert "x" not in repr(providers["a"].adapter).replace("simulator", "")  # the secret is redacted
    asyncio.run(router.aclose())


@pytest.mark.parametrize(
    ("rate", "headroom", "window", "limit"),
    [
        (50, 0.1, 1.0, 45),  # the rate the routing test runs at
        (0.5, 0.1, 1 / 0.45, 1),  # fractional: one send in any 2.2 s, the spacing itself
        (1, 0.1, 1 / 0.9, 1),
        (1, 0.0, 1.0, 1),
        (2, 0.5, 1.0, 1),  # exactly one interval: a whole send, not 0.99...
        (3, 0.3, 1.0, 2),  # 2.1 per second
        (110, 0.1, 1.0, 99),  # 98.99999999999999 in floats
        (90, 0.3, 1.0, 63),
        (1000, 0.1, 1.0, 900),
        (25_000, 0.1, 1.0, 22_500),
        (1_000_000, 0.1, 1.0, 900_000),
    ],
)
def test_the_send_window_is_the_headroom_reduced_rate(
    rate: float, headroom: float, window: float, limit: int
) -> None:
    p = Provider("p", SimulatorAdapter("http://sim", "x"), rate_per_second=rate, rate_headroom=headroom)
    assert p.send_window is not None
    seconds, sends = p.send_window
    assert seconds == pytest.approx(window) and sends == limit
    assert p.send_interval is not None and seconds >= p.send_interval  # at least one send fits
    assert Provider("u", SimulatorAdapter("http://sim", "x")).send_window is None  # unlimited


def test_signatures() -> None:
    assert verify("k", b"body", sign("k", b"body"))
    assert not verify("k", b"body", sign("other", b"body"))
    assert not verify("k", b"body", None)


def test_backoff_grows_with_jitter_and_respects_cap_and_retry_after() -> None:
    delays = [backoff_delay(n, 2.0, 300.0) for n in range(1, 12)]
    assert 1.0 <= delays[0] <= 2.0 and 8.0 <= delays[3] <= 16.0
    assert all(d <= 300.0 for d in delays) and delays[-1] >= 150.0
    assert backoff_delay(1, 2.0, 300.0, retry_after=30.0) == 30.0


def test_ids_are_prefixed_sortable_and_unique() -> None:
    ids = [new_id("ntf") for _ in range(1000)]
    assert len(set(ids)) == 1000 and all(i.startswith("ntf_") and len(i) == 30 for i in ids)
    assert ids[0][:12] <= ids[-1][:12]


def test_batch_maps_each_item_and_whole_failures() -> None:
    msgs = [
        Message(reference=f"acme:ntf_{i}", tenant="acme", channel="sms", to="+8613812345678", text="hi")
        for i in range(3)
    ]

    def per_item(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/v1/send/batch"
        assert len(json.loads(request.content)["messages"]) == 3
        return httpx.Response(
            200,
            json={
                "results": [
                    {"status": 200, "provider_message_id": "sim-1"},
                    {"status": 500, "code": "internal_error"},
                    {"status": 400, "code": "invalid_number"},
                ]
            },
        )

    def down(request: httpx.Request) -> httpx.Response:
        return httpx.Response(503)

    async def run(handler: object) -> list[object]:
        adapter = SimulatorAdapter("http://sim", "k", transport=httpx.MockTransport(handler))  # type: ignore[arg-type]
        try:
            return list(await adapter.send_batch(msgs))
        finally:
            await adapter.aclose()

    items = asyncio.run(run(per_item))
    assert [r.outcome for r in items] == [Outcome.SENT, Outcome.RETRY, Outcome.REJECTED]  # type: ignore[attr-defined]
    assert all(r.outcome is Outcome.RETRY for r in asyncio.run(run(down)))  # type: ignore[attr-defined]


def test_twilio_signature_matches_the_published_example() -> None:
    from channels.twilio import twilio_signature, verify_twilio

    params = {
        "CallSid": "CA1234567890ABCDE",
        "Caller": "+12349013030",
        "Digits": "1234",
        "From": "+12349013030",
        "To": "+18005551212",
    }
    url = "https://mycompany.com/myapp.php?foo=1&bar=2"
    assert twilio_signature("12345", url, params) == "0/KCTR6DLpKmkAf8muzZqo1nDgQ="
    assert verify_twilio("12345", url, params, "0/KCTR6DLpKmkAf8muzZqo1nDgQ=")
    assert not verify_twilio("12345", url, {**params, "Digits": "1235"}, "0/KCTR6DLpKmkAf8muzZqo1nDgQ=")
    assert not verify_twilio("12345", url, params, None)


def test_twilio_signature_holds_with_or_without_the_default_port_and_over_repeated_keys() -> None:
    import base64
    import hashlib
    import hmac

    from channels.twilio import verify_twilio

    def signed(url: str, payload: str) -> str:  # written out by hand, as Twilio's docs describe it
        return base64.b64encode(hmac.new(b"12345", (url + payload).encode(), hashlib.sha1).digest()).decode()

    params = {"From": "+12349013030", "To": "+18005551212"}
    fields = "From+12349013030To+18005551212"
    # Twilio signed the URL as its console had it; we see it with or without :443.
    assert verify_twilio(
        "12345", "https://mycompany.com/sms", params, signed("https://mycompany.com:443/sms", fields)
    )
    assert verify_twilio(
        "12345", "https://mycompany.com:443/sms", params, signed("https://mycompany.com/sms", fields)
    )
    assert verify_twilio(
        "12345", "http://mycompany.com:80/sms", params, signed("http://mycompany.com/sms", fields)
    )
    # Not any port: only the scheme's default.
    assert not verify_twilio(
        "12345", "https://mycompany.com:8443/sms", params, signed("https://mycompany.com/sms", fields)
    )
    # A repeated key: each distinct value, sorted, after the key.
    repeated = {"MediaUrl": ["https://b.example/2.jpg", "https://a.example/1.jpg"], "To": "+18005551212"}
    sig = signed(
        "https://mycompany.com/sms",
        "MediaUrlhttps://a.example/1.jpgMediaUrlhttps://b.example/2.jpgTo+18005551212",
    )
    assert verify_twilio("12345", "https://mycompany.com/sms", repeated, sig)
    assert not verify_twilio(
        "12345", "https://mycompany.com/sms", {**repeated, "MediaUrl": ["https://a.example/1.jpg"]}, sig
    )
