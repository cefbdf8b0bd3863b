"""Provider signatures pinned to the worked examples the providers publish; provider URLs redacted."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from channels.aliyun import rpc_signature, string_to_sign
from channels.config import ProvidersError, load_router
from channels.tencent import authorization, canonical_request
from channels.urls import ProviderURLError, parse_provider_url


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
