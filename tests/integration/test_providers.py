"""The contract suite: every registered provider adapter against a local server speaking its protocol.

Each stand-in checks the request signature with its own implementation of the provider's
published algorithm, not with the adapter's signing code (tests/providers.py); both are pinned to
the providers' worked examples in tests/unit/test_provider_signatures.py.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from channels.base import Message, Outcome, SendResult
from channels.config import ProviderSpec, build_provider
from channels.registry import KINDS
from channels.routing import Provider
from channels.simserver import Simulator
from gateway.api.servers import ServerThread
from gateway.state.redisdb import free_port
from tests.providers import BAD_NUMBER, ProviderServer

pytestmark = pytest.mark.integration

URLS = {
    "alibaba": "alibaba+http://{user}:{secret}@127.0.0.1:{port}/?sign_name=星耀商城"
    "&templates=points_expiry:SMS_1001&template_code=SMS_1000",
    "tencent": "tencent+http://{user}:{secret}@127.0.0.1:{port}/?sdk_app_id=1400000000&sign_name=星耀商城"
    "&templates=points_expiry:1001(name|points|days)&template_id=1000",
    "alibaba-voice": "alibaba-voice+http://{user}:{secret}@127.0.0.1:{port}/?called_show_number=057100000000"
    "&tts_codes=points_expiry:TTS_1001&tts_code=TTS_1000&play_times=2",
    "tencent-voice": "tencent-voice+http://{user}:{secret}@127.0.0.1:{port}/?voice_sdk_app_id=1400006666"
    "&templates=points_expiry:4356(name|points|days)&template_id=4350&play_times=3",
    "twilio": "twilio+http://{user}:{secret}@127.0.0.1:{port}/?from=%2B15005550006"
    "&status_callback=https://gw.example.com/v1/inbound/twilio/receipts",
    "webhook": "webhook+http://:{secret}@127.0.0.1:{port}/send",
    "fcm": "fcm+http://127.0.0.1:{port}/?service_account={account}",
    "apns": "apns+http://127.0.0.1:{port}/?key_file={account}&key_id=K1&team_id={user}&topic=com.example.loyalty",
    "wechat": "wechat+http://{user}:{secret}@127.0.0.1:{port}/?miniprogram_state=trial",
}
# The provider's own code for a bad signature or credentials, as its stand-in answers.
AUTH_CODES = {
    "alibaba": "SignatureDoesNotMatch",
    "alibaba-voice": "SignatureDoesNotMatch",
    "tencent": "AuthFailure.SignatureFailure",
    "tencent-voice": "AuthFailure.SignatureFailure",
    "twilio": "20003",
    "webhook": "bad_signature",
    "fcm": "oauth_400",  # Google's token endpoint refuses a JWT signed with another key
    "apns": "InvalidProviderToken",
    "wechat": "token_40001",  # the token endpoint refuses a wrong AppSecret
}
INVALID_NUMBER_CODES = {
    "alibaba": "isv.MOBILE_NUMBER_ILLEGAL",
    "alibaba-voice": "isv.MOBILE_NUMBER_ILLEGAL",
    "tencent": "InvalidParameterValue.IncorrectPhoneNumber",
    "tencent-voice": "FailedOperation.InvalidParameters",
    "twilio": "21211",
    "webhook": "invalid_number",
    "fcm": "UNREGISTERED",
    "apns": "Unregistered",
    "wechat": "40003",  # not an openid
}


def test_the_suite_covers_every_registered_kind() -> None:
    # The simulator is checked below against its own server; SMTP speaks SMTP, not HTTP, and is
    # tested against aiosmtpd in test_email.py.
    assert set(KINDS) - {"simulator", "smtp"} == set(URLS)


def test_the_simulator_checks_its_signature_too() -> None:
    port = free_port()
    thread = ServerThread(Simulator("http://127.0.0.1:9", "sim-secret"), "127.0.0.1", port).start_and_wait()
    try:
        url = f"simulator+http://:{{secret}}@127.0.0.1:{port}"
        good = build_provider("simulator", ProviderSpec(url=url.format(secret="sim-secret")))
        bad = build_provider("simulator", ProviderSpec(url=url.format(secret="not-the-secret")))
        assert send(good, message()).outcome is Outcome.SENT
        wrong = send(bad, message(reference="acme:ntf_other"))
        assert (wrong.outcome, wrong.code) == (Outcome.REJECTED, "bad_signature")
    finally:
        thread.stop()


@pytest.mark.parametrize("running", ["twilio"], indirect=True)
def test_twilio_mms_carries_every_media_url(running: Running) -> None:
    mms = Message(
        reference="acme:ntf_mms",
        tenant="acme",
        channel="mms",
        to="+14155550100",
        text="会员日海报",
        media=("https://cdn.example.com/a.jpg", "https://cdn.example.com/b.jpg"),
    )
    assert send(running.provider(), mms).outcome is Outcome.SENT
    [got] = running.server.accepted()
    assert got.fields["MediaUrl"] == ["https://cdn.example.com/a.jpg", "https://cdn.example.com/b.jpg"]


@dataclass
class Running:
    server: ProviderServer
    thread: ServerThread
    port: int

    tmp: Path

    def provider(self, secret: str | None = None, timeout: float = 2.0) -> Provider:
        kind = self.server.kind
        if kind in ("fcm", "apns") and secret is not None:
            secret = rsa_pem() if kind == "fcm" else ec_pem()  # a wrong secret: another key in the file
        account = self.tmp / f"credentials-{uuid.uuid4().hex[:6]}"
        if kind == "apns":
            account.write_text(secret or self.server.secret)
        else:
            account.write_text(
                json.dumps(
                    {
                        "type": "service_account",
                        "project_id": "tidings-test",
                        "private_key_id": "k1",
                        "private_key": secret or self.server.secret,
                        "client_email": self.server.user,
                        "token_uri": f"http://127.0.0.1:{self.port}/token",
                    }
                )
            )
        url = URLS[kind].format(
            user=self.server.user, secret=secret or self.server.secret, port=self.port, account=account
        )
        return build_provider(kind, ProviderSpec(url=url, timeout=timeout))


def rsa_pem() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def ec_pem() -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


@pytest.fixture(params=sorted(URLS))
def running(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Running]:
    server = ProviderServer(request.param)
    if request.param == "fcm":
        server.user, server.secret = "tidings@tidings-test.iam.gserviceaccount.com", rsa_pem()
    if request.param == "apns":
        server.user, server.secret = "TEAM123456", ec_pem()
    if request.param == "wechat":
        server.user, server.secret = "wx8f3c2a1b9d0e7f65", "app-secret-0123456789abcdef"
    port = free_port()
    thread = ServerThread(server, "127.0.0.1", port).start_and_wait()
    yield Running(server, thread, port, tmp_path)
    thread.stop()


def message(to: str = "+8613812345678", reference: str = "acme:ntf_01CONTRACT") -> Message:
    return Message(
        reference=reference,
        tenant="acme",
        channel="sms",
        to=to,
        brand="星耀商城",
        text="【星耀商城】尊敬的会员李女士,您的28600积分将于12天后清零,请尽快兑换。拒收请回复R",
        template="points_expiry",
        params={"name": "李女士", "points": 28600, "days": 12},
        # What a WeChat subscribe message carries (the SMS adapters ignore it).
        template_id="tmpl-points-expiry",
        page="pages/points/index",
        data={"thing1": {"value": "28600积分12天后清零"}, "name2": {"value": "李女士"}},
    )


def send(provider: Provider, m: Message) -> SendResult:
    async def run() -> SendResult:
        try:
            return await provider.adapter.send(m)
        finally:
            await provider.adapter.aclose()

    return asyncio.run(run())


def test_sends_with_our_reference_and_the_mapped_template(running: Running) -> None:
    result = send(running.provider(), message())
    assert result.outcome is Outcome.SENT, result
    assert result.provider_message_id
    [got] = running.server.accepted()
    f = got.fields
    kind = running.server.kind
    if kind == "alibaba":
        assert (f["PhoneNumbers"], f["OutId"], f["TemplateCode"]) == (
            "13812345678",
            "acme:ntf_01CONTRACT",
            "SMS_1001",
        )
        assert f["SignName"] == "星耀商城" and '"points":"28600"' in f["TemplateParam"]
    elif kind == "alibaba-voice":
        # No OutId: Alibaba takes 1 to 15 bytes there; the receipt's call_id finds the notification.
        assert (f["CalledNumber"], f["TtsCode"], f["CalledShowNumber"]) == (
            "13812345678",
            "TTS_1001",
            "057100000000",
        )
        assert f["PlayTimes"] == "2" and "OutId" not in f
        assert json.loads(f["TtsParam"]) == {"name": "李女士", "points": "28600", "days": "12"}
        assert result.provider_message_id.count("^") == 1  # the CallId
    elif kind == "tencent-voice":
        assert (f["CalledNumber"], f["VoiceSdkAppid"], f["SessionContext"]) == (
            "+8613812345678",
            "1400006666",
            "acme:ntf_01CONTRACT",
        )
        assert (f["TemplateId"], f["TemplateParamSet"], f["PlayTimes"]) == (
            "4356",
            ["李女士", "28600", "12"],
            3,
        )
    elif kind == "tencent":
        assert f["PhoneNumberSet"] == ["+8613812345678"] and f["SessionContext"] == "acme:ntf_01CONTRACT"
        assert (f["TemplateId"], f["TemplateParamSet"]) == ("1001", ["李女士", "28600", "12"])
    elif kind == "twilio":
        assert (f["To"], f["From"]) == ("+8613812345678", "+15005550006")
        assert f["Body"].startswith("【星耀商城】")
        assert parse_qs(urlsplit(f["StatusCallback"]).query)["ref"] == ["acme:ntf_01CONTRACT"]
    elif kind == "apns":
        assert (f["token"], f["reference"], f["topic"]) == (
            "+8613812345678",
            "acme:ntf_01CONTRACT",
            "com.example.loyalty",
        )
        assert f["aps"]["alert"]["body"].startswith("【星耀商城】")
    elif kind == "wechat":
        assert (f["touser"], f["template_id"], f["page"]) == (
            "+8613812345678",
            "tmpl-points-expiry",
            "pages/points/index",
        )
        assert f["data"] == {"thing1": {"value": "28600积分12天后清零"}, "name2": {"value": "李女士"}}
        assert (f["miniprogram_state"], f["lang"]) == ("trial", "zh_CN")
    elif kind == "fcm":
        assert (f["token"], f["reference"]) == ("+8613812345678", "acme:ntf_01CONTRACT")
        assert f["notification"]["body"].startswith("【星耀商城】")
    else:
        assert (f["to"], f["reference"], f["template"]) == (
            "+8613812345678",
            "acme:ntf_01CONTRACT",
            "points_expiry",
        )


def test_a_wrong_secret_fails_the_signature_check_and_is_permanent(running: Running) -> None:
    result = send(running.provider(secret="not-the-secret"), message())
    assert result.outcome is Outcome.REJECTED, result
    assert result.code == AUTH_CODES[running.server.kind]
    # APNs: a refused provider token is renewed once before giving up, so two requests.
    assert running.server.accepted() == []
    assert len(running.server.received) == (2 if running.server.kind == "apns" else 1)


def test_an_invalid_number_is_permanent_with_the_providers_code(running: Running) -> None:
    result = send(running.provider(), message(to=BAD_NUMBER))
    assert result.outcome is Outcome.REJECTED, result
    assert result.code == INVALID_NUMBER_CODES[running.server.kind]


def test_a_5xx_is_transient(running: Running) -> None:
    running.server.fault_status = 503
    result = send(running.provider(), message())
    assert result.outcome is Outcome.RETRY, result


def test_a_provider_slower_than_the_timeout_is_transient(running: Running) -> None:
    running.server.delay = 1.5
    result = send(running.provider(timeout=0.5), message())
    assert (result.outcome, result.code) == (Outcome.RETRY, "timeout")


def test_free_text_needs_a_provider_template_where_the_provider_sends_only_templates(
    running: Running,
) -> None:
    free = Message(
        reference="acme:ntf_free", tenant="acme", channel="sms", to="+8613812345678", text="【星耀商城】你好"
    )
    result = send(running.provider(), free)
    if running.server.kind == "wechat":  # a subscribe message is a template or nothing
        assert (result.outcome, result.code) == (Outcome.REJECTED, "40037")
        return
    assert result.outcome is Outcome.SENT, (
        result
    )  # alibaba and tencent: their default template carries the text
    [got] = running.server.accepted()
    if running.server.kind == "alibaba":
        assert (got.fields["TemplateCode"], got.fields["TemplateParam"]) == (
            "SMS_1000",
            '{"content":"【星耀商城】你好"}',
        )
    if running.server.kind == "tencent":
        assert (got.fields["TemplateId"], got.fields["TemplateParamSet"]) == ("1000", ["【星耀商城】你好"])
    if running.server.kind == "alibaba-voice":
        assert (got.fields["TtsCode"], got.fields["TtsParam"]) == (
            "TTS_1000",
            '{"content":"【星耀商城】你好"}',
        )
    if running.server.kind == "tencent-voice":
        assert (got.fields["TemplateId"], got.fields["TemplateParamSet"]) == ("4350", ["【星耀商城】你好"])


@pytest.mark.parametrize("running", ["fcm"], indirect=True)
def test_fcm_fetches_its_token_once_and_reuses_it(running: Running) -> None:
    provider = running.provider()

    async def run() -> list[SendResult]:
        try:
            return list(
                await asyncio.gather(
                    *(provider.adapter.send(message(reference=f"acme:ntf_{i}")) for i in range(20))
                )
            )
        finally:
            await provider.adapter.aclose()

    results = asyncio.run(run())
    assert all(r.outcome is Outcome.SENT for r in results)
    assert running.server.token_requests == 1 and len(running.server.accepted()) == 20


@pytest.mark.parametrize("running", ["wechat"], indirect=True)
def test_wechat_refreshes_a_token_the_provider_expired_once_under_20_concurrent_sends(
    running: Running,
) -> None:
    provider = running.provider()

    async def run() -> tuple[SendResult, list[SendResult]]:
        try:
            first = await provider.adapter.send(message(reference="acme:ntf_first"))
            running.server.expire_tokens()  # WeChat now answers 42001 to the cached token
            rest = await asyncio.gather(
                *(provider.adapter.send(message(reference=f"acme:ntf_{i}")) for i in range(20))
            )
            return first, list(rest)
        finally:
            await provider.adapter.aclose()

    first, rest = asyncio.run(run())
    assert first.outcome is Outcome.SENT
    assert all(r.outcome is Outcome.SENT for r in rest), rest
    # One token at first, exactly one more for the twenty, each of which was refused once (42001).
    assert running.server.token_requests == 2
    assert running.server.token_refusals == 20
    assert len(running.server.accepted()) == 21


@pytest.mark.parametrize("running", ["wechat"], indirect=True)
def test_wechat_renews_a_token_past_its_expires_in_once_before_wechat_refuses_it(running: Running) -> None:
    running.server.token_ttl = 61  # the adapter renews a minute early: stale after one second
    provider = running.provider()

    async def run() -> list[SendResult]:
        try:
            await provider.adapter.send(message(reference="acme:ntf_first"))
            await asyncio.sleep(1.2)
            return list(
                await asyncio.gather(
                    *(provider.adapter.send(message(reference=f"acme:ntf_{i}")) for i in range(20))
                )
            )
        finally:
            await provider.adapter.aclose()

    results = asyncio.run(run())
    assert all(r.outcome is Outcome.SENT for r in results)
    assert running.server.token_requests == 2 and running.server.token_refusals == 0


@pytest.mark.parametrize("running", ["wechat"], indirect=True)
def test_wechat_43101_and_bad_data_are_permanent_with_wechats_code(running: Running) -> None:
    refused = send(running.provider(), message(to="oRefuse-member-1"))
    assert (refused.outcome, refused.code) == (Outcome.REJECTED, "43101")
    long_thing = Message(
        reference="acme:ntf_long",
        tenant="acme",
        channel="wechat",
        to="oUpF8uMuAJO_M2pxb1Q9zNjWeS6o",
        template_id="tmpl-points-expiry",
        data={"thing1": {"value": "积" * 21}},
    )
    bad = send(running.provider(), long_thing)
    assert (bad.outcome, bad.code) == (Outcome.REJECTED, "47003")
    assert running.server.token_requests == 2  # a new adapter each send: one token each
