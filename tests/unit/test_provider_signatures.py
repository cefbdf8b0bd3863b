"""Provider signatures pinned to the worked examples the providers publish; provider URLs redacted.

Each example is checked twice: against the gateway's signer in ``channels/`` and against the
independent check the stand-ins in ``tests/providers.py`` apply. The expected strings are the
published ones (Alibaba Cloud's RPC signature and SMS signature pages, Tencent Cloud's API 3.0
"Signature v3" page in both its editions, RFC 7617 for HTTP Basic, docs/providers.md for our own
webhook signature), copied as data.
"""

from __future__ import annotations

import ast
import asyncio
import hashlib
import json
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from channels.aliyun import AlibabaSms, pct, rpc_signature, string_to_sign
from channels.base import Message, Outcome, SendResult
from channels.config import ProvidersError, load_router
from channels.fcm import FcmPush
from channels.signing import sign_timestamped, verify_timestamped
from channels.tencent import TencentSms, authorization, canonical_request
from channels.twilio import TwilioMessages
from channels.urls import ProviderURLError, parse_provider_url
from channels.webhook import Webhook
from tests import providers as standin


def test_alibaba_rpc_signature_matches_the_documented_describe_regions_example() -> None:
    # Alibaba Cloud's signature documentation: AccessKeyId testid, secret testsecret.
    params = {
        "TimeStamp": "2016-02-23T12:46:24Z",
        "Format": "XML",
        "AccessKeyId": "testid",
        "Action": "DescribeRegions",
        "SignatureMethod": "HMAC-SHA1",
        "SignatureNonce": "3ee8c1b8-83d3-44af-a94f-4e0ad82fd6cf",
        "Version": "2014-05-26",
        "SignatureVersion": "1.0",
    }
    assert string_to_sign("GET", params) == (
        "GET&%2F&AccessKeyId%3Dtestid%26Action%3DDescribeRegions%26Format%3DXML%26SignatureMethod%3DHMAC-SHA1"
        "%26SignatureNonce%3D3ee8c1b8-83d3-44af-a94f-4e0ad82fd6cf%26SignatureVersion%3D1.0"
        "%26TimeStamp%3D2016-02-23T12%253A46%253A24Z%26Version%3D2014-05-26"
    )
    assert rpc_signature("testsecret", "GET", params) == "CT9X0VtwR86fNWSnsc6v8YGOjuE="
    assert rpc_signature("othersecret", "GET", params) != "CT9X0VtwR86fNWSnsc6v8YGOjuE="


def test_tencent_tc3_signature_matches_the_documented_describe_instances_example() -> None:
    # Tencent Cloud API 3.0 signature documentation (credentials as the docs print them).
    payload = b'{"Limit": 1, "Filters": [{"Values": ["\\u672a\\u547d\\u540d"], "Name": "instance-name"}]}'
    content_type = "application/json; charset=utf-8"
    canonical = canonical_request("cvm.tencentcloudapi.com", content_type, payload)
    assert canonical.endswith("35e9c5b0e3ae67532d3c9f17ead6c90222632e5b1ff7f6e89887f1398934f064")
    header = authorization(
        "AKIDz8krbsJ5yKBZQpn74WFkmLPx3*******",
        "Gu5t9xGARNpq86cd98joQYCN3*******",
        "cvm",
        "cvm.tencentcloudapi.com",
        content_type,
        payload,
        1551113065,
    )
    assert header == (
        "TC3-HMAC-SHA256 Credential=AKIDz8krbsJ5yKBZQpn74WFkmLPx3*******/2019-02-25/cvm/tc3_request, "
        "SignedHeaders=content-type;host, "
        "Signature=2230eefd229f582d8b1b891af7107b91597240707d778ab3738f756258d7652c"
    )


# -- Alibaba Cloud RPC signature ------------------------------------------------------------------
# The published examples (GET requests): secret, params, StringToSign (where printed), Signature.
ALIBABA_DESCRIBE_REGIONS_2016 = {  # the older edition of the RPC signature page ("TimeStamp")
    "TimeStamp": "2016-02-23T12:46:24Z",
    "Format": "XML",
    "AccessKeyId": "testid",
    "Action": "DescribeRegions",
    "SignatureMethod": "HMAC-SHA1",
    "SignatureNonce": "3ee8c1b8-83d3-44af-a94f-4e0ad82fd6cf",
    "Version": "2014-05-26",
    "SignatureVersion": "1.0",
}
ALIBABA_DESCRIBE_REGIONS = {  # the current edition ("Timestamp")
    **{k: v for k, v in ALIBABA_DESCRIBE_REGIONS_2016.items() if k != "TimeStamp"},
    "Timestamp": "2016-02-23T12:46:24Z",
}
ALIBABA_SEND_SMS = {  # the SMS API's own signature page: SendSms, a Chinese SignName, JSON params
    "AccessKeyId": "testId",
    "Action": "SendSms",
    "Format": "XML",
    "OutId": "123",
    "PhoneNumbers": "15300000001",
    "RegionId": "cn-hangzhou",
    "SignName": "阿里云短信测试专用",
    "SignatureMethod": "HMAC-SHA1",
    "SignatureNonce": "45e25e9b-0a6f-4070-8c85-2956eda1b466",
    "SignatureVersion": "1.0",
    "TemplateCode": "SMS_71390007",
    "TemplateParam": '{"customer":"test"}',
    "Timestamp": "2017-07-12T02:42:19Z",
    "Version": "2017-05-25",
}
ALIBABA_SEND_SMS_STRING_TO_SIGN = (
    "GET&%2F&AccessKeyId%3DtestId%26Action%3DSendSms%26Format%3DXML%26OutId%3D123"
    "%26PhoneNumbers%3D15300000001%26RegionId%3Dcn-hangzhou"
    "%26SignName%3D%25E9%2598%25BF%25E9%2587%258C%25E4%25BA%2591%25E7%259F%25AD%25E4%25BF%25A1"
    "%25E6%25B5%258B%25E8%25AF%2595%25E4%25B8%2593%25E7%2594%25A8"
    "%26SignatureMethod%3DHMAC-SHA1%26SignatureNonce%3D45e25e9b-0a6f-4070-8c85-2956eda1b466"
    "%26SignatureVersion%3D1.0%26TemplateCode%3DSMS_71390007"
    "%26TemplateParam%3D%257B%2522customer%2522%253A%2522test%2522%257D"
    "%26Timestamp%3D2017-07-12T02%253A42%253A19Z%26Version%3D2017-05-25"
)
ALIBABA_EXAMPLES = [
    pytest.param(
        "testsecret",
        ALIBABA_DESCRIBE_REGIONS_2016,
        "GET&%2F&AccessKeyId%3Dtestid%26Action%3DDescribeRegions%26Format%3DXML%26SignatureMethod%3DHMAC-SHA1"
        "%26SignatureNonce%3D3ee8c1b8-83d3-44af-a94f-4e0ad82fd6cf%26SignatureVersion%3D1.0"
        "%26TimeStamp%3D2016-02-23T12%253A46%253A24Z%26Version%3D2014-05-26",
        "CT9X0VtwR86fNWSnsc6v8YGOjuE=",
        id="2016",
    ),
    pytest.param("testsecret", ALIBABA_DESCRIBE_REGIONS, None, "OLeaidS1JvxuMvnyHOwuJ+uX5qY=", id="regions"),
    pytest.param(
        "testSecret",
        ALIBABA_SEND_SMS,
        ALIBABA_SEND_SMS_STRING_TO_SIGN,
        "zJDF+Lrzhj/ThnlvIToysFRq6t4=",
        id="sms",
    ),
]


@pytest.mark.parametrize(("secret", "params", "to_sign", "signature"), ALIBABA_EXAMPLES)
def test_alibaba_signer_and_standin_match_the_published_examples(
    secret: str, params: dict[str, str], to_sign: str | None, signature: str
) -> None:
    if to_sign is not None:
        assert string_to_sign("GET", params) == to_sign
        assert standin.alibaba_string_to_sign("GET", params) == to_sign
    assert rpc_signature(secret, "GET", params) == signature
    assert standin.alibaba_rpc_signature(secret, "GET", params) == signature
    signed = {**params, "Signature": signature}
    assert standin.alibaba_signature_ok(secret, "GET", signed)
    assert not standin.alibaba_signature_ok(secret + "x", "GET", signed)
    assert not standin.alibaba_signature_ok(secret, "POST", signed)
    assert not standin.alibaba_signature_ok(secret, "GET", {**signed, "Version": "2017-05-26"})
    assert not standin.alibaba_signature_ok(secret, "GET", {**signed, "SignatureMethod": "HMAC-SHA256"})


def test_alibaba_percent_encoding_follows_the_published_rules() -> None:
    # Unreserved characters stay, a space is %20 (not +), "*" is %2A, "~" is not %7E; UTF-8 bytes.
    cases = {
        "AZaz09-_.~": "AZaz09-_.~",
        "a b": "a%20b",
        "*": "%2A",
        "/=&+:": "%2F%3D%26%2B%3A",
        "星": "%E6%98%9F",
        '{"a":"b"}': "%7B%22a%22%3A%22b%22%7D",
    }
    for raw, encoded in cases.items():
        assert pct(raw) == encoded
        assert standin.alibaba_percent_encode(raw) == encoded


def run(coro: Coroutine[Any, Any, SendResult]) -> SendResult:
    return asyncio.run(coro)


def capture(
    answer: Callable[[httpx.Request], httpx.Response],
) -> tuple[httpx.MockTransport, list[httpx.Request]]:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return answer(request)

    return httpx.MockTransport(handler), seen


def sms(**kw: Any) -> Message:
    fields: dict[str, Any] = {
        "reference": "acme:ntf_01",
        "tenant": "acme",
        "channel": "sms",
        "to": "+8613800138000",
        "text": "积分 *将* 到期~ 回T退订",
    }
    return Message(**(fields | kw))


def test_what_the_alibaba_adapter_sends_passes_the_independent_check() -> None:
    url = parse_provider_url(
        "alibaba://LTAI5tExample:VerySecret123@dysmsapi.aliyuncs.com/?sign_name=星耀商城&template_code=SMS_1000",
        environ={},
    )
    ok = {"Code": "OK", "Message": "OK", "BizId": "900^0"}
    transport, seen = capture(lambda _: httpx.Response(200, json=ok))
    adapter = AlibabaSms(url, transport=transport)
    assert run(adapter.send(sms())).outcome is Outcome.SENT
    params = dict(parse_qsl(seen[0].content.decode(), keep_blank_values=True))
    assert seen[0].method == "POST" and params["AccessKeyId"] == "LTAI5tExample"
    assert standin.alibaba_signature_ok("VerySecret123", "POST", params)
    assert not standin.alibaba_signature_ok("OtherSecret", "POST", params)
    assert not standin.alibaba_signature_ok(
        "VerySecret123", "POST", {**params, "PhoneNumbers": "13900139000"}
    )


# -- Tencent Cloud API 3.0, TC3-HMAC-SHA256 -------------------------------------------------------
# The page's example request (CVM DescribeInstances, 2019-02-26 00:44:25 UTC+8), and its two
# editions' credentials and results: the older with "...EXAMPLE" keys, the current with masked ones.
TENCENT_PAYLOAD = b'{"Limit": 1, "Filters": [{"Values": ["\\u672a\\u547d\\u540d"], "Name": "instance-name"}]}'
TENCENT_TIMESTAMP = 1551113065
TENCENT_CANONICAL_REQUEST = (
    "POST\n/\n\ncontent-type:application/json; charset=utf-8\nhost:cvm.tencentcloudapi.com\n\n"
    "content-type;host\n35e9c5b0e3ae67532d3c9f17ead6c90222632e5b1ff7f6e89887f1398934f064"
)
TENCENT_STRING_TO_SIGN = (
    "TC3-HMAC-SHA256\n1551113065\n2019-02-25/cvm/tc3_request\n"
    "5ffe6a04c0664d6b969fab9a13bdab201d63ee709638e2749d62a09ca18d7031"
)
TENCENT_EXAMPLES = [
    pytest.param(
        "AKIDz8krbsJ5yKBZQpn74WFkmLPx3EXAMPLE",
        "Gu5t9xGARNpq86cd98joQYCN3EXAMPLE",
        "72e494ea809ad7a8c8f7a4507b9bddcbaa8e581f516e8da2f66e2c5a96525168",
        id="example-keys",
    ),
    pytest.param(
        "AKIDz8krbsJ5yKBZQpn74WFkmLPx3*******",
        "Gu5t9xGARNpq86cd98joQYCN3*******",
        "2230eefd229f582d8b1b891af7107b91597240707d778ab3738f756258d7652c",
        id="masked-keys",
    ),
]


def tencent_example_headers(authorization_header: str) -> dict[str, str]:
    return {
        "authorization": authorization_header,
        "content-type": "application/json; charset=utf-8",
        "host": "cvm.tencentcloudapi.com",
        "x-tc-action": "DescribeInstances",
        "x-tc-version": "2017-03-12",
        "x-tc-timestamp": str(TENCENT_TIMESTAMP),
        "x-tc-region": "ap-guangzhou",
    }


@pytest.mark.parametrize(("secret_id", "secret_key", "signature"), TENCENT_EXAMPLES)
def test_tencent_signer_and_standin_match_the_published_examples(
    secret_id: str, secret_key: str, signature: str
) -> None:
    published = (
        f"TC3-HMAC-SHA256 Credential={secret_id}/2019-02-25/cvm/tc3_request, "
        f"SignedHeaders=content-type;host, Signature={signature}"
    )
    content_type = "application/json; charset=utf-8"
    assert (
        hashlib.sha256(TENCENT_PAYLOAD).hexdigest()
        == "35e9c5b0e3ae67532d3c9f17ead6c90222632e5b1ff7f6e89887f1398934f064"
    )
    # The gateway's signer.
    assert (
        canonical_request("cvm.tencentcloudapi.com", content_type, TENCENT_PAYLOAD)
        == TENCENT_CANONICAL_REQUEST
    )
    assert (
        authorization(
            secret_id,
            secret_key,
            "cvm",
            "cvm.tencentcloudapi.com",
            content_type,
            TENCENT_PAYLOAD,
            TENCENT_TIMESTAMP,
        )
        == published
    )
    # The stand-in's check, step by step and whole.
    headers = tencent_example_headers(published)
    canonical = standin.tc3_canonical_request(
        "POST", "/", "", headers, ["content-type", "host"], TENCENT_PAYLOAD
    )
    assert canonical == TENCENT_CANONICAL_REQUEST
    assert standin.tc3_string_to_sign(TENCENT_TIMESTAMP, "cvm", canonical) == TENCENT_STRING_TO_SIGN
    assert standin.tc3_signature(secret_key, "2019-02-25", "cvm", TENCENT_STRING_TO_SIGN) == signature
    ok = standin.tencent_authorization_ok
    assert ok(secret_id, secret_key, "cvm", "POST", "/", headers, TENCENT_PAYLOAD)
    assert not ok(secret_id, secret_key + "x", "cvm", "POST", "/", headers, TENCENT_PAYLOAD)
    assert not ok("AKIDother", secret_key, "cvm", "POST", "/", headers, TENCENT_PAYLOAD)
    assert not ok(secret_id, secret_key, "sms", "POST", "/", headers, TENCENT_PAYLOAD)
    assert not ok(secret_id, secret_key, "cvm", "POST", "/", headers, TENCENT_PAYLOAD.replace(b"1", b"2"))
    assert not ok(
        secret_id,
        secret_key,
        "cvm",
        "POST",
        "/",
        {**headers, "host": "sms.tencentcloudapi.com"},
        TENCENT_PAYLOAD,
    )
    # The credential date must be the UTC date of X-TC-Timestamp (here 2019-02-26 would be the
    # local date in UTC+8: the page's own warning).
    next_day = {**headers, "x-tc-timestamp": str(TENCENT_TIMESTAMP + 86400)}
    assert not ok(secret_id, secret_key, "cvm", "POST", "/", next_day, TENCENT_PAYLOAD)
    without_host = published.replace("SignedHeaders=content-type;host", "SignedHeaders=content-type")
    assert not ok(
        secret_id, secret_key, "cvm", "POST", "/", {**headers, "authorization": without_host}, TENCENT_PAYLOAD
    )


def test_what_the_tencent_adapter_sends_passes_the_independent_check() -> None:
    url = parse_provider_url(
        "tencent://AKIDExample:SecretExample@sms.tencentcloudapi.com/?sdk_app_id=1400000000"
        "&sign_name=星耀商城&template_id=1000",
        environ={},
    )
    status = {"SerialNo": "s1", "PhoneNumber": "+8613800138000", "Code": "Ok", "Message": "send success"}
    answer = {"Response": {"SendStatusSet": [status], "RequestId": "r1"}}
    transport, seen = capture(lambda _: httpx.Response(200, json=answer))
    assert run(TencentSms(url, transport=transport).send(sms())).outcome is Outcome.SENT
    request = seen[0]
    headers = {k.lower(): v for k, v in request.headers.items()}
    ok = standin.tencent_authorization_ok
    assert ok("AKIDExample", "SecretExample", "sms", "POST", request.url.path, headers, request.content)
    assert not ok("AKIDExample", "OtherSecret", "sms", "POST", request.url.path, headers, request.content)
    assert not ok("AKIDExample", "SecretExample", "sms", "POST", "/", headers, request.content + b" ")


# -- Twilio: HTTP Basic -----------------------------------------------------------------------------
def test_basic_auth_check_matches_the_rfc_7617_example() -> None:
    assert standin.basic_auth_ok("Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==", "Aladdin", "open sesame")
    # The scheme name is case-insensitive; the user and password are not.
    assert standin.basic_auth_ok("basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==", "Aladdin", "open sesame")
    assert not standin.basic_auth_ok("Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==", "Aladdin", "open sesame!")
    assert not standin.basic_auth_ok("Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==", "aladdin", "open sesame")
    assert not standin.basic_auth_ok("Bearer QWxhZGRpbjpvcGVuIHNlc2FtZQ==", "Aladdin", "open sesame")
    assert not standin.basic_auth_ok("Basic not base64!", "Aladdin", "open sesame")
    assert not standin.basic_auth_ok(None, "Aladdin", "open sesame")


def test_what_the_twilio_adapter_sends_passes_the_independent_check() -> None:
    sid, token = "AC0123456789abcdef0123456789abcdef", "auth-token-0123"
    url = parse_provider_url(f"twilio://{sid}:{token}@api.twilio.com/?from=%2B15005550006", environ={})
    transport, seen = capture(lambda _: httpx.Response(201, json={"sid": "SM1", "status": "queued"}))
    assert run(TwilioMessages(url, transport=transport).send(sms(to="+15005550009"))).outcome is Outcome.SENT
    assert seen[0].url.path == f"/2010-04-01/Accounts/{sid}/Messages.json"
    header = seen[0].headers.get("authorization")
    assert standin.basic_auth_ok(header, sid, token)
    assert not standin.basic_auth_ok(header, sid, "another-token")


# -- Tidings' webhook signature (docs/providers.md) -------------------------------------------------
WEBHOOK_SECRET = "whsec-example"
WEBHOOK_BODY = b'{"reference":"acme:ntf_01","to":"+15005550006"}'
WEBHOOK_HEADER = "t=1700000000,v1=663960f4d9c07026dc854bcaac6690d210cba0d9a1dc9119d1b1ee3f8840501e"


def test_webhook_signer_and_standin_match_the_documented_example() -> None:
    assert sign_timestamped(WEBHOOK_SECRET, WEBHOOK_BODY, 1700000000) == WEBHOOK_HEADER
    assert verify_timestamped(WEBHOOK_SECRET, WEBHOOK_BODY, WEBHOOK_HEADER, 1700000000)
    ok = standin.webhook_signature_ok
    for now in (1700000000, 1700000000 + 300, 1700000000 - 300):
        assert ok(WEBHOOK_SECRET, WEBHOOK_BODY, WEBHOOK_HEADER, now)
    for now in (1700000000 + 301, 1700000000 - 301):  # more than 300 s off: a replay
        assert not ok(WEBHOOK_SECRET, WEBHOOK_BODY, WEBHOOK_HEADER, now)
    assert not ok("whsec-other", WEBHOOK_BODY, WEBHOOK_HEADER, 1700000000)
    assert not ok(WEBHOOK_SECRET, WEBHOOK_BODY + b"\n", WEBHOOK_HEADER, 1700000000)
    assert not ok(
        WEBHOOK_SECRET, WEBHOOK_BODY, WEBHOOK_HEADER.replace("t=1700000000", "t=1700000001"), 1700000000
    )
    assert not ok(
        WEBHOOK_SECRET,
        WEBHOOK_BODY,
        WEBHOOK_HEADER.upper().replace("T=", "t=").replace("V1=", "v1="),
        1700000000,
    )
    for malformed in (
        None,
        "",
        "v1=" + WEBHOOK_HEADER.split("v1=")[1],
        "t=1700000000",
        WEBHOOK_HEADER + ",t=1",
    ):
        assert not ok(WEBHOOK_SECRET, WEBHOOK_BODY, malformed, 1700000000)


def test_what_the_webhook_adapter_sends_passes_the_independent_check() -> None:
    url = parse_provider_url("webhook://:whsec-example@hooks.example.com/send", environ={})
    transport, seen = capture(lambda _: httpx.Response(200, json={"id": "wh_1"}))
    assert run(Webhook(url, transport=transport).send(sms())).outcome is Outcome.SENT
    header = seen[0].headers.get("x-tidings-signature")
    assert standin.webhook_signature_ok("whsec-example", seen[0].content, header, time.time())
    assert not standin.webhook_signature_ok("whsec-other", seen[0].content, header, time.time())


# -- FCM: the service account's JWT bearer assertion ---------------------------------------------
def test_the_fcm_assertion_passes_the_independent_check(tmp_path: Path) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    email = "tidings@tidings-test.iam.gserviceaccount.com"
    account = {
        "client_email": email,
        "private_key": pem,
        "private_key_id": "k1",
        "project_id": "tidings-test",
        "token_uri": "https://oauth-proxy.example.com/token",  # a proxy: aud is still Google's
    }
    (tmp_path / "sa.json").write_text(json.dumps(account))

    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/token":
            return httpx.Response(200, json={"access_token": "ya29.x", "expires_in": 3599})
        return httpx.Response(200, json={"name": "projects/tidings-test/messages/1"})

    transport, seen = capture(answer)
    url = parse_provider_url(f"fcm://fcm.googleapis.com/?service_account={tmp_path / 'sa.json'}", environ={})
    assert (
        run(FcmPush(url, transport=transport).send(sms(channel="push", to="device-1"))).outcome
        is Outcome.SENT
    )
    form = dict(parse_qsl(seen[0].content.decode()))
    assert form["grant_type"] == "urn:ietf:params:oauth:grant-type:jwt-bearer"
    claims = standin.google_assertion_claims(form["assertion"], key.public_key(), email)
    assert claims is not None
    assert claims["scope"] == "https://www.googleapis.com/auth/firebase.messaging"
    assert claims["aud"] == "https://oauth2.googleapis.com/token"
    assert 0 < claims["exp"] - claims["iat"] <= 3600
    assert jwt.get_unverified_header(form["assertion"])["alg"] == "RS256"
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    assert standin.google_assertion_claims(form["assertion"], other.public_key(), email) is None
    assert standin.google_assertion_claims(form["assertion"], key.public_key(), "someone@else") is None


def test_the_fcm_assertion_check_refuses_what_google_refuses() -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    email, now = "sa@p.iam.gserviceaccount.com", int(time.time())
    good = {
        "iss": email,
        "scope": "https://www.googleapis.com/auth/firebase.messaging",
        "aud": "https://oauth2.googleapis.com/token",
        "iat": now,
        "exp": now + 3600,
    }
    check = standin.google_assertion_claims
    assert check(jwt.encode(good, key, algorithm="RS256"), key.public_key(), email) == good
    bad_claims = [
        {**good, "aud": "https://oauth-proxy.example.com/token"},
        {**good, "exp": now + 3601},  # more than an hour after iat
        {**good, "iat": now - 7200, "exp": now - 3600},  # expired
        {k: v for k, v in good.items() if k != "iat"},
    ]
    for claims in bad_claims:
        assert check(jwt.encode(claims, key, algorithm="RS256"), key.public_key(), email) is None
    hs256 = jwt.encode(good, "a shared secret of at least thirty-two bytes", algorithm="HS256")
    assert check(hs256, key.public_key(), email) is None


def test_the_standins_import_nothing_from_channels() -> None:
    # Checked against channels/ they would repeat its mistakes instead of catching them.
    tree = ast.parse((Path(__file__).parents[1] / "providers.py").read_text(encoding="utf-8"))
    imported = [
        alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names
    ] + [node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)]
    assert imported and not [name for name in imported if name.split(".")[0] in ("channels", "gateway")]


def test_provider_urls_never_show_their_secrets() -> None:
    url = parse_provider_url(
        "alibaba://LTAI5tExample:VerySecret123@dysmsapi.aliyuncs.com/?sign_name=星耀商城&token=abc",
        environ={},
    )
    assert (url.kind, url.scheme, url.user, url.secret) == (
        "alibaba",
        "https",
        "LTAI5tExample",
        "VerySecret123",
    )
    shown = url.redacted()
    assert "VerySecret123" not in shown and "LTAI5tExample" not in shown and "abc" not in shown
    assert shown.startswith("alibaba://LTAI****:***@dysmsapi.aliyuncs.com")
    assert "VerySecret123" not in repr(url) and "VerySecret123" not in str(url)


def test_provider_urls_take_secrets_from_the_environment() -> None:
    url = parse_provider_url(
        "webhook+http://:${HOOK_SECRET}@127.0.0.1:9000/send", environ={"HOOK_SECRET": "s3"}
    )
    assert (url.secret, url.base, url.path) == ("s3", "http://127.0.0.1:9000", "/send")
    with pytest.raises(ProviderURLError, match="MISSING_VAR") as err:
        parse_provider_url("webhook://:${MISSING_VAR}@h/", environ={})
    assert "s3" not in str(err.value)
    with pytest.raises(ProviderURLError):
        parse_provider_url("webhook+ftp://:x@h/", environ={})


def test_the_ops_example_providers_file_loads_and_bad_ones_are_named_without_secrets(tmp_path: Path) -> None:
    names = ("ALIYUN_ACCESS_KEY_ID", "ALIYUN_ACCESS_KEY_SECRET", "TENCENT_SECRET_ID", "TENCENT_SECRET_KEY")
    names += ("TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN", "INHOUSE_SIGNING_SECRET", "SMTP_PASSWORD")
    names += ("WECHAT_APPID", "WECHAT_APPSECRET")
    env = {n: f"secret-{n.lower()}" for n in names}
    key = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    (tmp_path / "apns.p8").write_bytes(key)
    account = {"client_email": "a@b", "private_key": "unused", "project_id": "p"}
    (tmp_path / "firebase.json").write_text(json.dumps(account))
    env |= {
        "APNS_KEY_FILE": str(tmp_path / "apns.p8"),
        "FCM_SERVICE_ACCOUNT_FILE": str(tmp_path / "firebase.json"),
    }
    router = load_router(Path(__file__).parents[2] / "ops" / "providers.example.toml", env)
    assert {p.name for p in router.candidates("sms")} == {"aliyun", "tencent", "inhouse"}
    assert router.candidates("sms")[-1].name == "inhouse"  # priority 1 after the two at 0
    assert [p.name for p in router.candidates("email")] == ["mail", "inhouse"]
    assert [p.name for p in router.candidates("push")] == ["fcm", "inhouse"]
    assert [p.name for p in router.candidates("voice")] == ["aliyun_voice", "tencent_voice"]
    assert [p.name for p in router.candidates("wechat")] == ["wechat"]
    assert all("secret-" not in repr(p.adapter) for p in router.providers.values())

    bad = tmp_path / "providers.toml"
    bad.write_text('[providers.x]\nurl = "alibaba://id:TopSecret@h/"\n', encoding="utf-8")
    with pytest.raises(ProvidersError, match="sign_name") as err:
        load_router(bad, {})
    assert "TopSecret" not in str(err.value)
    bad.write_text(
        '[providers.x]\nurl = "webhook://:s@h/"\n[[routes.sms]]\nprovider = "y"\n', encoding="utf-8"
    )
    with pytest.raises(ProvidersError, match="unknown provider 'y'"):
        load_router(bad, {})
