"""WeChat's message push on raw callbacks: the query signature, subscribe_msg_sent_event in JSON and
XML (one entry or a list), other events read as no receipts, the plain-text answers."""

from __future__ import annotations

import json
import time

import pytest

from channels import registry
from channels.base import Callback, CallbackAuth, ForgedCallback, MalformedCallback, Receipt, UrlCheck
from channels.wechat import WechatSubscribe, push_signature

TOKEN = "push-t0ken"
URL = "https://gw.example.com/v1/inbound/wechat/receipts"


def signed(body: bytes, token: str = TOKEN, **extra: str) -> Callback:
    query = {"timestamp": str(int(time.time())), "nonce": "1514711492", **extra}
    query["signature"] = push_signature(token, query["timestamp"], query["nonce"])
    return Callback(body, URL, query)


def sent_json(entries: object, event: str = "subscribe_msg_sent_event") -> bytes:
    return json.dumps(
        {
            "ToUserName": "gh_123456789abc",
            "FromUserName": "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o",
            "CreateTime": "1620963428",
            "MsgType": "event",
            "Event": event,
            "SubscribeMsgSentEvent": {"List": entries},
        }
    ).encode()


SENT_XML = b"""<xml>
  <ToUserName><![CDATA[gh_123456789abc]]></ToUserName>
  <FromUserName><![CDATA[oUpF8uMuAJO_M2pxb1Q9zNjWeS6o]]></FromUserName>
  <CreateTime>1610969468</CreateTime>
  <MsgType><![CDATA[event]]></MsgType>
  <Event><![CDATA[subscribe_msg_sent_event]]></Event>
  <SubscribeMsgSentEvent>
    <List>
      <TemplateId><![CDATA[tmpl-points-credited]]></TemplateId>
      <MsgID>1700827132819554304</MsgID>
      <ErrorCode>0</ErrorCode>
      <ErrorStatus><![CDATA[success]]></ErrorStatus>
    </List>
    <List>
      <TemplateId><![CDATA[tmpl-points-credited]]></TemplateId>
      <MsgID>1700827132819554305</MsgID>
      <ErrorCode>10005</ErrorCode>
      <ErrorStatus><![CDATA[failed:user block]]></ErrorStatus>
    </List>
  </SubscribeMsgSentEvent>
</xml>"""


def test_the_signature_is_wechats_sha1_of_the_sorted_token_timestamp_and_nonce() -> None:
    # WeChat's documented example: Token AAAAA, timestamp 1714036504, nonce 1514711492.
    assert push_signature("AAAAA", "1714036504", "1514711492") == "f464b24fc39322e44b38aa78f5edd27bd1441696"
    assert registry.inbound("wechat") is WechatSubscribe
    assert WechatSubscribe.callback_auth is CallbackAuth.SIGNED
    assert isinstance(WechatSubscribe, UrlCheck)
    WechatSubscribe.verify_callback(signed(b""), TOKEN)


@pytest.mark.parametrize(
    "query",
    [
        {"timestamp": "1714036504", "nonce": "1514711492", "signature": "0" * 40},
        {"timestamp": "1714036504", "nonce": "1514711492"},
        {"nonce": "1514711492", "signature": push_signature(TOKEN, "", "1514711492")},
        {},
    ],
)
def test_a_wrong_or_missing_signature_is_forged(query: dict[str, str]) -> None:
    with pytest.raises(ForgedCallback) as refused:
        WechatSubscribe.verify_callback(Callback(b"", URL, query), TOKEN)
    assert refused.value.code == "bad_signature"
    with pytest.raises(ForgedCallback):  # signed with another Token
        WechatSubscribe.verify_callback(signed(b"", "other"), TOKEN)


def test_json_one_entry_as_an_object_or_several_as_a_list() -> None:
    one = {"TemplateId": "t", "MsgID": "1700827132819554304", "ErrorCode": 0, "ErrorStatus": "success"}
    failed = {"TemplateId": "t", "MsgID": "17", "ErrorCode": 20001, "ErrorStatus": "failed:system failed"}
    assert WechatSubscribe.parse_receipts(signed(sent_json(one))) == [
        Receipt("1700827132819554304", True, "success", channel="wechat")
    ]
    assert WechatSubscribe.parse_receipts(signed(sent_json([one, failed]))) == [
        Receipt("1700827132819554304", True, "success", channel="wechat"),
        Receipt("17", False, "failed:system failed", channel="wechat"),
    ]


def test_xml_entries_are_read_the_same_way() -> None:
    assert WechatSubscribe.parse_receipts(signed(SENT_XML)) == [
        Receipt("1700827132819554304", True, "success", channel="wechat"),
        Receipt("1700827132819554305", False, "failed:user block", channel="wechat"),
    ]


def test_compatible_mode_bodies_are_read_by_their_plaintext_fields() -> None:
    xml = SENT_XML.replace(b"<xml>", b"<xml><Encrypt><![CDATA[c2FmZQ==]]></Encrypt>")
    assert len(WechatSubscribe.parse_receipts(signed(xml))) == 2
    body = {**json.loads(sent_json({"MsgID": "9", "ErrorCode": 0, "ErrorStatus": "success"})), "Encrypt": "x"}
    assert WechatSubscribe.parse_receipts(signed(json.dumps(body).encode())) == [
        Receipt("9", True, "success", channel="wechat")
    ]


def test_other_events_carry_no_receipts_and_every_push_is_answered_success() -> None:
    popup = sent_json([], event="subscribe_msg_popup_event")
    assert WechatSubscribe.parse_receipts(signed(popup)) == []
    xml = SENT_XML.replace(b"subscribe_msg_sent_event", b"subscribe_msg_change_event")
    assert WechatSubscribe.parse_receipts(signed(xml)) == []
    ack = WechatSubscribe.receipts_ack(0, 0)
    assert (ack.body, ack.media_type) == (b"success", "text/plain")
    assert WechatSubscribe.parse_replies(signed(popup)) == []


@pytest.mark.parametrize(
    "body",
    [
        b"{not json",
        b"[1, 2]",
        b"<xml><Event>subscribe_msg_sent_event",
        b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa">]><xml><Event>&a;</Event></xml>',
        sent_json([{"ErrorCode": 0, "ErrorStatus": "success"}]),  # no MsgID
        json.dumps({"ToUserName": "gh_1", "Encrypt": "c2FmZSBtb2Rl"}).encode(),  # safe mode
        b"<xml><ToUserName>gh_1</ToUserName><Encrypt><![CDATA[c2FmZQ==]]></Encrypt></xml>",
    ],
)
def test_malformed_entity_laden_and_encrypted_bodies_are_refused(body: bytes) -> None:
    with pytest.raises(MalformedCallback):
        WechatSubscribe.parse_receipts(signed(body))


def test_the_url_check_is_answered_with_its_echostr() -> None:
    ack = WechatSubscribe.url_check_ack(signed(b"", echostr="4375120948345356249"))
    assert (ack.body, ack.media_type) == (b"4375120948345356249", "text/plain")
    with pytest.raises(MalformedCallback):
        WechatSubscribe.url_check_ack(signed(b""))


def test_a_push_signed_long_ago_is_refused_as_stale() -> None:
    old = {"timestamp": str(int(time.time()) - 3600), "nonce": "1514711492"}
    old["signature"] = push_signature(TOKEN, old["timestamp"], old["nonce"])
    with pytest.raises(ForgedCallback, match="over 300 s"):
        WechatSubscribe.verify_callback(Callback(b"", URL, old), TOKEN)
