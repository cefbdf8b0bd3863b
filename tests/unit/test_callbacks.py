"""Each adapter's inbound side on raw callbacks: signatures verified, receipts and replies read in the
provider's format, malformed bodies refused with a problem code, the provider's own answer."""

from __future__ import annotations

import json
from urllib.parse import urlencode

import pytest

from channels import registry
from channels.aliyun import AlibabaSms
from channels.base import Callback, CallbackAuth, ForgedCallback, InboundReply, MalformedCallback, Receipt
from channels.signing import SIGNATURE_HEADER, sign
from channels.simulator import SimulatorAdapter
from channels.tencent import TencentSms
from channels.twilio import TwilioMessages, twilio_signature

URL = "https://gw.example.com/v1/inbound/twilio/receipts?ref=acme%3Antf_1"


def jsoned(value: object) -> Callback:
    return Callback(json.dumps(value, ensure_ascii=False).encode(), "https://gw.example.com/x")


def twilio(fields: dict[str, str], url: str = URL, query: dict[str, str] | None = None) -> Callback:
    return Callback(
        urlencode(fields).encode(),
        url,
        query or {},
        {"x-twilio-signature": twilio_signature("tok", url, fields)},
    )


def test_the_adapters_that_take_callbacks_are_found_by_kind() -> None:
    assert registry.inbound("alibaba") is AlibabaSms
    assert registry.inbound("tencent") is TencentSms
    assert registry.inbound("twilio") is TwilioMessages
    assert registry.inbound("simulator") is SimulatorAdapter
    assert [registry.inbound(k) for k in ("webhook", "smtp", "fcm", "apns", "nosuch")] == [None] * 5
    assert {AlibabaSms.callback_auth, TencentSms.callback_auth} == {CallbackAuth.URL_TOKEN}
    assert {TwilioMessages.callback_auth, SimulatorAdapter.callback_auth} == {CallbackAuth.SIGNED}


def test_simulator_callbacks_are_signed_over_the_body() -> None:
    body = json.dumps(
        {"receipts": [{"reference": "acme:ntf_1", "provider_message_id": "sim-1", "status": "delivered"}]}
    ).encode()
    good = Callback(body, "u", {}, {SIGNATURE_HEADER: sign("s3cret", body)})
    SimulatorAdapter.verify_callback(good, "s3cret")
    for headers in ({SIGNATURE_HEADER: sign("other", body)}, {}):
        with pytest.raises(ForgedCallback) as refused:
            SimulatorAdapter.verify_callback(Callback(body, "u", {}, headers), "s3cret")
        assert refused.value.code == "bad_signature"
    assert SimulatorAdapter.parse_receipts(good) == [Receipt("sim-1", True, None, "acme:ntf_1", None, "sms")]
    assert json.loads(SimulatorAdapter.receipts_ack(1, 1).body) == {"ok": True, "received": 1, "applied": 1}


def test_simulator_reply_names_its_tenant_by_reference() -> None:
    reply = jsoned({"from": "+8613812345678", "text": "TD", "brand": "星耀商城", "reference": "acme:ntf_1"})
    assert SimulatorAdapter.parse_replies(reply) == [
        InboundReply("+8613812345678", "TD", "星耀商城", "acme", "ntf_1")
    ]
    unknown = jsoned({"from": "+8613812345678", "text": "TD"})
    assert (
        SimulatorAdapter.parse_replies(unknown)[0].tenant is None
        and SimulatorAdapter.parse_replies(unknown)[0].notification_id is None
    )
    answer = SimulatorAdapter.replies_ack([{"kind": "opt_out", "action": "opted_out"}])
    assert json.loads(answer.body) == {"ok": True, "kind": "opt_out", "action": "opted_out"}
    with pytest.raises(MalformedCallback) as refused:
        SimulatorAdapter.parse_replies(jsoned({"text": 1}))
    assert refused.value.code == "malformed_reply"


def test_alibaba_pushes_read_reports_and_smsup_records() -> None:
    report = {"success": False, "biz_id": "b1", "out_id": "acme:ntf_1", "err_code": "MK:0001"}
    report_time = {"success": True, "biz_id": "b2", "report_time": "2026-11-25 10:00:05"}
    assert AlibabaSms.parse_receipts(jsoned([report, report_time])) == [
        Receipt("b1", False, "MK:0001", "acme:ntf_1", None),
        Receipt("b2", True, None, None, "2026-11-25 10:00:05"),
    ]
    records = [
        {"phone_number": "13812345678", "content": "退订", "sign_name": "【星耀商城】"},
        {"phone_number": "13812340002", "content": "hi", "sequence_id": 7},
    ]
    assert AlibabaSms.parse_replies(jsoned(records)) == [
        InboundReply("13812345678", "退订", "星耀商城"),
        InboundReply("13812340002", "hi", None),
    ]
    assert json.loads(AlibabaSms.receipts_ack(2, 0).body) == {"code": 0, "msg": "成功"}
    assert json.loads(AlibabaSms.replies_ack([]).body) == {"code": 0, "msg": "接收成功"}
    for parse, code in (
        (AlibabaSms.parse_receipts, "malformed_receipt"),
        (AlibabaSms.parse_replies, "malformed_reply"),
    ):
        with pytest.raises(MalformedCallback) as refused:
            parse(jsoned({"not": "a list"}))
        assert refused.value.code == code


def test_tencent_callbacks_read_reports_and_one_reply() -> None:
    reports = [{"report_status": "SUCCESS", "sid": "s1", "errmsg": "DELIVRD", "user_receive_time": "t"}]
    assert TencentSms.parse_receipts(jsoned(reports)) == [Receipt("s1", True, "DELIVRD", None, "t")]
    reply = {"mobile": "13812345678", "nationcode": "86", "sign": "星耀商城", "text": "TD", "time": 1}
    assert TencentSms.parse_replies(jsoned(reply)) == [InboundReply("+8613812345678", "TD", "星耀商城")]
    plus = {"mobile": "+14155550100", "text": "STOP"}
    assert TencentSms.parse_replies(jsoned(plus)) == [InboundReply("+14155550100", "STOP", None)]
    assert json.loads(TencentSms.replies_ack([]).body) == {"result": 0, "errmsg": "OK"}
    with pytest.raises(MalformedCallback) as refused:
        TencentSms.parse_receipts(Callback(b"not json", "u"))
    assert refused.value.code == "malformed_receipt"


def test_twilio_status_callback_is_signed_and_only_final_statuses_count() -> None:
    delivered = twilio(
        {"MessageSid": "SM1", "MessageStatus": "undelivered", "ErrorCode": "30003", "NumMedia": "1"},
        query={"ref": "acme:ntf_1"},
    )
    TwilioMessages.verify_callback(delivered, "tok")
    with pytest.raises(ForgedCallback):
        TwilioMessages.verify_callback(delivered, "another-token")
    with pytest.raises(ForgedCallback):  # the URL (and so ?ref=) is part of what is signed
        TwilioMessages.verify_callback(Callback(delivered.body, URL + "x", {}, delivered.headers), "tok")
    assert TwilioMessages.parse_receipts(delivered) == [
        Receipt("SM1", False, "30003", "acme:ntf_1", None, "mms")
    ]
    assert TwilioMessages.parse_receipts(twilio({"MessageSid": "SM1", "MessageStatus": "sent"})) == []
    with pytest.raises(MalformedCallback) as refused:
        TwilioMessages.verify_callback(Callback(b"\xff\xfe", URL, {}, {}), "tok")
    assert refused.value.code == "malformed_request"
    ack = TwilioMessages.receipts_ack(1, 1)
    assert ack.media_type == "text/xml" and b"<Response></Response>" in ack.body


def test_twilio_reply_takes_tenant_and_brand_from_the_signed_url() -> None:
    query = {"tenant": "acme", "brand": "星耀商城"}
    reply = twilio({"From": "+8613812345678", "Body": "STOP"}, query=query)
    assert TwilioMessages.parse_replies(reply) == [InboundReply("+8613812345678", "STOP", "星耀商城", "acme")]
    for fields, q in (({"From": "+86138"}, {}), ({"Body": "STOP"}, {"tenant": "acme"})):
        with pytest.raises(MalformedCallback) as refused:
            TwilioMessages.parse_replies(twilio(fields, query=q))
        assert refused.value.code == "malformed_reply"
    assert TwilioMessages.replies_ack([]) == TwilioMessages.receipts_ack(0, 0)
