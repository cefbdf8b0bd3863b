"""WeChat mini-program subscribe messages (subscribeMessage.send) with a cached access token.

URL: ``wechat://APPID:APPSECRET@api.weixin.qq.com/?miniprogram_state=formal&lang=zh_CN``
(``miniprogram_state``: developer, trial or formal, the version a tap opens; ``lang`` zh_CN by
default). ``wechat+http://...@127.0.0.1:PORT/`` talks to a local stand-in.

The token: ``GET /cgi-bin/token?grant_type=client_credential&appid=&secret=`` answers
``{"access_token", "expires_in": 7200}``. It is kept per adapter until a minute before it expires
and shared by every send; one fetch at a time (a lock), so twenty sends that find it expired cause
one fetch, not twenty. errcode 40001 (invalid credential), 42001 (expired) or 40014 (invalid token)
on a send drop it and that send is tried once more with a fresh one.

The send: ``POST /cgi-bin/message/subscribe/send?access_token=...`` with ``touser`` (openid),
``template_id``, ``page``, ``data`` ``{"thing1": {"value": "..."}}``, ``miniprogram_state``,
``lang``; answered ``{"errcode": 0, "errmsg": "ok", "msgid": ...}`` with HTTP 200 even on errors.
errcode 43101 (the member refused, or the one-time grant is used up) is REJECTED with code 43101,
which the engine turns into ``no_wechat_grant``; 40003 (bad openid), 40037 (bad template), 41030
(bad page), 47003 (bad data) are REJECTED; -1 (system busy) and 45009 (daily quota) are RETRY.

Receipts: WeChat pushes the outcome of each send to the mini program's message push URL (its
"消息推送" settings), set to ``https://GATEWAY/v1/inbound/wechat/receipts``, as the event
``subscribe_msg_sent_event``: ``SubscribeMsgSentEvent.List`` (one entry or several) with
``TemplateId``, ``MsgID`` (the send's msgid), ``ErrorCode`` (0 delivered) and ``ErrorStatus``
(``success``, ``failed:user block``, ``failed:system failed``), in JSON or XML as the push settings
say. The query carries ``signature`` = SHA1 of the push Token, ``timestamp`` and ``nonce`` sorted and
joined; the Token is ``TIDINGS_WECHAT_PUSH_TOKEN``. Plaintext and compatible mode only: a safe-mode
(AES, ``Encrypt``) body is refused. WeChat wants ``success`` as plain text within 5 seconds, and
checks the URL first with a GET carrying ``echostr``, answered with the echostr once signed.
"""

from __future__ import annotations

import hashlib
import hmac
import time
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import msgspec

from channels.base import (
    Ack,
    Callback,
    CallbackAuth,
    ForgedCallback,
    InboundReply,
    MalformedCallback,
    Message,
    Receipt,
    SendResult,
)
from channels.http import HttpAdapter, TokenCache, json_or_none
from channels.urls import ProviderURL, ProviderURLError

STATES = ("developer", "trial", "formal")
TOKEN_INVALID = frozenset({"40001", "42001", "40014"})
NO_GRANT = "43101"
PERMANENT = frozenset({NO_GRANT, "40003", "40037", "41030", "47003", "40013", "40125", "40164"})
TRANSIENT = frozenset({"-1", "45009", "45011", "45047"})
PUSH_MAX_AGE = 300  # seconds a push's signed timestamp may be from our clock
SENT_EVENT = "subscribe_msg_sent_event"
SUCCESS = Ack(b"success", "text/plain")


def push_signature(token: str, timestamp: str, nonce: str) -> str:
    """WeChat's push signature: SHA1 of the Token, timestamp and nonce sorted and concatenated."""
    return hashlib.sha1(
        "".join(sorted((token, timestamp, nonce))).encode(), usedforsecurity=False
    ).hexdigest()


def _text(node: ET.Element | None) -> str:
    return (node.text or "").strip() if node is not None else ""


def _xml_event(body: bytes) -> tuple[str, list[dict[str, str]]]:
    """An XML push's Event and its SubscribeMsgSentEvent/List entries (a DTD is refused unread)."""
    if b"<!DOCTYPE" in body.upper() or b"<!ENTITY" in body.upper():
        raise MalformedCallback("malformed_request", "an XML push with a DTD is not WeChat's")
    try:
        root = ET.fromstring(body)  # noqa: S314 - no DTD (refused above), so no entity expansion
    except ET.ParseError as exc:
        raise MalformedCallback("malformed_request", f"not XML: {exc}") from None
    if root.find("Encrypt") is not None and root.find("Event") is None:  # compatible mode has both
        raise MalformedCallback("encrypted_push", "safe mode (AES) is not supported: use compatible mode")
    entries = [
        {child.tag: _text(child) for child in entry} for entry in root.iterfind("SubscribeMsgSentEvent/List")
    ]
    return _text(root.find("Event")), entries


def _json_event(body: bytes) -> tuple[str, list[dict[str, str]]]:
    """A JSON push's Event and its SubscribeMsgSentEvent.List entries (an object or a list)."""
    try:
        data = msgspec.json.decode(body)
    except msgspec.DecodeError as exc:
        raise MalformedCallback("malformed_request", str(exc)) from None
    if not isinstance(data, dict):
        raise MalformedCallback("malformed_request", "a push is a JSON object")
    if "Encrypt" in data and "Event" not in data:
        raise MalformedCallback("encrypted_push", "safe mode (AES) is not supported: use compatible mode")
    sent = data.get("SubscribeMsgSentEvent")
    listed = sent.get("List", []) if isinstance(sent, dict) else []
    listed = [listed] if isinstance(listed, dict) else listed
    if not isinstance(listed, list) or not all(isinstance(e, dict) for e in listed):
        raise MalformedCallback("malformed_request", "SubscribeMsgSentEvent.List is not an object or a list")
    entries = [{str(k): str(v) for k, v in e.items()} for e in listed]
    return str(data.get("Event", "")), entries


class WechatSubscribe(HttpAdapter):
    """``POST /cgi-bin/message/subscribe/send`` with the app's access token."""

    channels: ClassVar[frozenset[str]] = frozenset({"wechat"})
    callback_auth: ClassVar[CallbackAuth] = CallbackAuth.SIGNED

    def __init__(self, url: ProviderURL, *, name: str = "wechat", timeout: float = 5.0, **kw: Any) -> None:
        super().__init__(name, timeout=timeout, **kw)
        if not url.user or not url.secret:
            raise ProviderURLError(f"{url.redacted()}: needs APPID:APPSECRET before the host")
        self.state = url.option("miniprogram_state", "formal") or "formal"
        if self.state not in STATES:
            raise ProviderURLError(f"{url.redacted()}: miniprogram_state must be one of {', '.join(STATES)}")
        self.lang = url.option("lang", "zh_CN") or "zh_CN"
        self.url = url
        self.tokens = TokenCache()

    def __repr__(self) -> str:
        return f"WechatSubscribe({self.url.redacted()})"

    async def _access_token(self) -> str | SendResult:
        """The cached token, or a new one (one fetch however many sends wait)."""
        return await self.tokens.get(self._fetch_token)

    async def _fetch_token(self) -> tuple[str, float] | SendResult:
        resp = await self.request(
            "GET",
            f"{self.url.base}/cgi-bin/token",
            params={"grant_type": "client_credential", "appid": self.url.user, "secret": self.url.secret},
        )
        if isinstance(resp, SendResult):
            return resp
        data = json_or_none(resp)
        if resp.status_code != 200 or not isinstance(data, dict) or not data.get("access_token"):
            code = str(data.get("errcode")) if isinstance(data, dict) and "errcode" in data else None
            detail = str(data.get("errmsg")) if isinstance(data, dict) else None
            if resp.status_code >= 500 or code == "-1":
                return self.retry("token_" + (code or str(resp.status_code)), detail)
            # A wrong AppSecret (40001/40125), an unknown AppID (40013), a server not on the IP
            # whitelist (40164): refused for good until someone fixes the configuration.
            return self.rejected("token_" + (code or str(resp.status_code)), detail)
        return str(data["access_token"]), float(data.get("expires_in", 7200))

    async def send(self, message: Message) -> SendResult:
        """Send; on 40001/42001 fetch a new token once and try again."""
        for fresh in (False, True):
            token = await self._access_token()
            if isinstance(token, SendResult):
                return token
            resp = await self.request(
                "POST",
                f"{self.url.base}/cgi-bin/message/subscribe/send",
                params={"access_token": token},
                json=self.payload(message),
            )
            if isinstance(resp, SendResult):
                return resp
            data = json_or_none(resp)
            code = str(data.get("errcode", 0)) if isinstance(data, dict) else None
            if code in TOKEN_INVALID and not fresh:
                await self.tokens.drop(token)
                continue
            return self.result(resp.status_code, data, code)
        raise AssertionError("unreachable")

    def payload(self, message: Message) -> dict[str, Any]:
        """The subscribe message (``page`` left out when there is none: the card then opens nothing)."""
        body: dict[str, Any] = {
            "touser": message.to,
            "template_id": message.template_id or "",
            "data": {k: {"value": str(v.get("value", ""))} for k, v in message.data.items()},
            "miniprogram_state": self.state,
            "lang": self.lang,
        }
        if message.page:
            body["page"] = message.page
        return body

    def result(self, status: int, data: Any, code: str | None) -> SendResult:
        """errcode 0 is sent (msgid the provider's id); the rest by errcode, then by HTTP status."""
        if status == 200 and code == "0" and isinstance(data, dict):
            return self.sent(str(data.get("msgid") or ""))
        detail = str(data.get("errmsg") or "") or None if isinstance(data, dict) else None
        if code in PERMANENT:
            return self.rejected(code, detail)
        if code in TRANSIENT or code in TOKEN_INVALID:
            return self.retry(code, detail)
        if status != 200:
            return self.classify(status, code if code not in (None, "0") else None, detail)
        # An errcode we do not know: WeChat's own trouble more often than ours; try again later.
        return self.retry(code or "no_errcode", detail)

    # -- the message push (receipts) -------------------------------------------------------------
    @classmethod
    def verify_callback(cls, callback: Callback, secret: str) -> None:
        """``signature`` over the push Token (``secret``), ``timestamp`` and ``nonce``, constant time."""
        given = callback.query.get("signature", "")
        timestamp, nonce = callback.query.get("timestamp", ""), callback.query.get("nonce", "")
        if not (given and timestamp and nonce and secret):
            raise ForgedCallback("bad_signature", "signature, timestamp and nonce are required")
        if not hmac.compare_digest(push_signature(secret, timestamp, nonce), given.strip().lower()):
            raise ForgedCallback("bad_signature", "the push signature does not verify")
        # The signature does not cover the body: a captured one may be replayed only briefly.
        if not timestamp.isdigit() or abs(time.time() - int(timestamp)) > PUSH_MAX_AGE:
            raise ForgedCallback("stale_signature", f"the push is over {PUSH_MAX_AGE} s from now")

    @classmethod
    def parse_receipts(cls, callback: Callback) -> list[Receipt]:
        """One receipt per ``subscribe_msg_sent_event`` entry, by MsgID; other events carry none."""
        body = callback.body.lstrip()
        event, entries = _xml_event(body) if body.startswith(b"<") else _json_event(body)
        if event != SENT_EVENT:
            return []  # popup and change events, customer-service messages: nothing to settle
        found = []
        for entry in entries:
            msgid = entry.get("MsgID") or entry.get("MsgId") or ""
            if not msgid:
                raise MalformedCallback("malformed_request", "a SubscribeMsgSentEvent entry has no MsgID")
            code = entry.get("ErrorCode", "")
            found.append(
                Receipt(msgid, code == "0", entry.get("ErrorStatus") or code or None, channel="wechat")
            )
        return found

    @classmethod
    def parse_replies(cls, callback: Callback) -> list[InboundReply]:
        """WeChat has no SMS-style replies: its pushes go to the receipts URL."""
        return []

    @classmethod
    def receipts_ack(cls, received: int, applied: int) -> Ack:
        """``success`` as plain text, whatever was applied (else WeChat pushes again)."""
        return SUCCESS

    @classmethod
    def replies_ack(cls, outcomes: Sequence[Mapping[str, str]]) -> Ack:
        """``success`` as plain text."""
        return SUCCESS

    @classmethod
    def url_check_ack(cls, callback: Callback) -> Ack:
        """The server-URL check (a signed GET): answered with its ``echostr``."""
        echostr = callback.query.get("echostr", "")
        if not echostr:
            raise MalformedCallback("malformed_request", "the URL check carries no echostr")
        return Ack(echostr.encode(), "text/plain")
