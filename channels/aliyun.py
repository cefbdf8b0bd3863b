"""Alibaba Cloud SMS (dysmsapi 2017-05-25): ``SendSms`` with the RPC signature, our id as ``OutId``.

URL: ``alibaba://AccessKeyId:AccessKeySecret@dysmsapi.aliyuncs.com/?sign_name=星耀商城
&templates=points_expiry:SMS_1001,points_credited:SMS_1002&template_code=SMS_1000&content_param=content``

Alibaba sends only registered templates: a notification made from a catalogue template goes out
as the mapped ``TemplateCode`` with its params; one with free text goes out through
``template_code`` with the text as the ``content_param`` variable; otherwise it is refused.
Time-out: ``QuerySendDetails`` can look a message up by number and date only, not by ``OutId``,
so a send that timed out is sent again (at least once); receipts carry ``out_id`` and tie both
sends to one notification.

Callbacks (HTTP batch push of SmsReport receipts and SmsUp replies) are JSON arrays and are not
signed: the push URL carries ``?tenant=T&token=...`` (the gateway's token for the tenant). Each
push is answered ``{"code": 0, ...}``, else Alibaba pushes it again.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, ClassVar
from urllib.parse import quote

import httpx
import msgspec

from channels.base import (
    Ack,
    Callback,
    CallbackAuth,
    InboundReply,
    Message,
    Receipt,
    SendResult,
    decode_json,
    signature_brand,
)
from channels.http import HttpAdapter, json_or_none
from channels.urls import ProviderURL

# Codes worth trying again (system trouble, throttling); every other code is permanent.
TRANSIENT = frozenset(
    {
        "isp.SYSTEM_ERROR",
        "isv.BUSINESS_LIMIT_CONTROL",
        "Throttling.User",
        "Throttling.Api",
        "ServiceUnavailable",
        "InternalError",
    }
)


# The RPC request signature (SignatureMethod HMAC-SHA1, SignatureVersion 1.0): StringToSign =
# METHOD + "&" + pct("/") + "&" + pct(canonical query), where the canonical query is every
# parameter but Signature, sorted by name, each name and value percent-encoded the RFC 3986 way
# (only A-Z a-z 0-9 - _ . ~ left as they are, space as %20); the key is AccessKeySecret + "&";
# the signature is the Base64 of the HMAC-SHA1.


def pct(value: str) -> str:
    """Alibaba's percent-encoding (RFC 3986 unreserved characters kept)."""
    return quote(value, safe="-_.~")


def canonical_query(params: Mapping[str, str]) -> str:
    """Sorted, encoded ``name=value`` pairs joined by ``&`` (Signature excluded)."""
    return "&".join(f"{pct(k)}={pct(v)}" for k, v in sorted(params.items()) if k != "Signature")


def string_to_sign(method: str, params: Mapping[str, str]) -> str:
    """What gets signed."""
    return f"{method.upper()}&{pct('/')}&{pct(canonical_query(params))}"


def rpc_signature(secret: str, method: str, params: Mapping[str, str]) -> str:
    """The ``Signature`` parameter's value (before URL encoding)."""
    digest = hmac.new(f"{secret}&".encode(), string_to_sign(method, params).encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def mapping(option: str | None) -> dict[str, str]:
    """``a:X,b:Y`` as a dict."""
    out: dict[str, str] = {}
    for item in (option or "").split(","):
        name, _, value = item.partition(":")
        if name.strip() and value.strip():
            out[name.strip()] = value.strip()
    return out


def provider_number(e164: str) -> str:
    """Alibaba takes mainland numbers without a prefix and others as country code + number."""
    digits = e164.lstrip("+")
    return digits[2:] if digits.startswith("86") and len(digits) == 13 else digits


class AlibabaRpc(HttpAdapter):
    """What Alibaba Cloud's RPC products share (dysmsapi SendSms, dyvmsapi SingleCallByTts): the
    template a message maps to, the signed common parameters, one POST, and ``Code`` OK or an error."""

    action: ClassVar[str]
    version: ClassVar[str] = "2017-05-25"
    product: ClassVar[str] = "Alibaba"  # in what a refusal says
    url: ProviderURL
    templates: dict[str, str]
    default_template: str | None
    content_param: str

    def template_for(self, message: Message) -> tuple[str, dict[str, str]] | SendResult:
        """The registered template a message goes out as, with its variables; REJECTED when none fits
        (a catalogue template maps to its code; free text goes through the default one)."""
        code = self.templates.get(message.template or "")
        if code is not None:
            return code, {k: str(v) for k, v in message.params.items()}
        if self.default_template and message.text:
            return self.default_template, {self.content_param: message.text}
        return self.rejected(
            "no_provider_template",
            f"no {self.product} template is configured for {message.template or 'free text'}",
        )

    def signed(self, specific: Mapping[str, str], now: datetime | None = None) -> dict[str, str]:
        """The call's parameters: the common ones, ``specific``, and the RPC ``Signature``."""
        params = {
            "AccessKeyId": self.url.user,
            "Action": self.action,
            "Format": "JSON",
            "RegionId": self.url.option("region", "cn-hangzhou") or "cn-hangzhou",
            "SignatureMethod": "HMAC-SHA1",
            "SignatureNonce": uuid.uuid4().hex,
            "SignatureVersion": "1.0",
            "Timestamp": (now or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "Version": self.version,
            **specific,
        }
        params["Signature"] = rpc_signature(self.url.secret, "POST", params)
        return params

    def request_params(self, message: Message, now: datetime | None = None) -> dict[str, str] | SendResult:
        """The signed parameters of one call, or REJECTED."""
        raise NotImplementedError

    def message_id(self, data: Mapping[str, Any]) -> str | None:
        """The provider's id of what an OK answer accepted (None: the answer is not a success)."""
        raise NotImplementedError

    async def send(self, message: Message) -> SendResult:
        """One call."""
        params = self.request_params(message)
        if isinstance(params, SendResult):
            return params
        resp = await self.request("POST", f"{self.url.base}/", data=params)
        if isinstance(resp, SendResult):
            return resp
        return self.result(resp)

    def result(self, resp: httpx.Response) -> SendResult:
        """Map the answer: Code OK (with its id) is sent, TRANSIENT codes retry, others are permanent."""
        data = json_or_none(resp)
        code = str(data.get("Code", "")) if isinstance(data, dict) else ""
        detail = str(data.get("Message", "")) if isinstance(data, dict) else None
        if resp.status_code == 200 and code == "OK" and isinstance(data, dict):
            sent_id = self.message_id(data)
            if sent_id is not None:
                return self.sent(sent_id)
        if code in TRANSIENT:
            return self.retry(code, detail)
        if code and resp.status_code < 500:
            return self.rejected(code, detail)
        return self.by_status(resp, code or None, detail)


class AlibabaReport(msgspec.Struct):
    """One SmsReport record of Alibaba Cloud's HTTP batch push."""

    success: bool
    biz_id: str = ""
    out_id: str = ""
    err_code: str = ""
    err_msg: str = ""
    phone_number: str = ""
    report_time: str = ""


class AlibabaReply(msgspec.Struct):
    """One SmsUp record of Alibaba Cloud's HTTP batch push."""

    phone_number: str
    content: str
    send_time: str = ""
    dest_code: str = ""
    sequence_id: int | str = ""
    sign_name: str | None = None


class AlibabaSms(AlibabaRpc):
    """SendSms, one message per call."""

    action: ClassVar[str] = "SendSms"

    channels: ClassVar[frozenset[str]] = frozenset({"sms"})
    title_maxlen: ClassVar[int] = 0
    callback_auth: ClassVar[CallbackAuth] = CallbackAuth.URL_TOKEN

    def __init__(self, url: ProviderURL, *, name: str = "alibaba", timeout: float = 5.0, **kw: Any) -> None:
        super().__init__(name, timeout=timeout, **kw)
        url.require("sign_name")
        if not url.user or not url.secret:
            raise ValueError(f"{url.redacted()}: AccessKeyId and AccessKeySecret are required")
        self.url = url
        self.templates = mapping(url.option("templates"))
        self.default_template = url.option("template_code")
        self.content_param = url.option("content_param", "content") or "content"

    def __repr__(self) -> str:
        return f"AlibabaSms({self.url.redacted()})"

    def request_params(self, message: Message, now: datetime | None = None) -> dict[str, str] | SendResult:
        """The signed parameters of a SendSms call, or REJECTED when no template fits."""
        template = self.template_for(message)
        if isinstance(template, SendResult):
            return template
        code, template_param = template
        return self.signed(
            {
                "PhoneNumbers": provider_number(message.to),
                "SignName": self.url.option("sign_name") or "",
                "TemplateCode": code,
                "TemplateParam": json.dumps(template_param, ensure_ascii=False, separators=(",", ":")),
                "OutId": message.reference,
            },
            now,
        )

    def message_id(self, data: Mapping[str, Any]) -> str | None:
        """SendSms's BizId (the receipts name it too)."""
        return str(data.get("BizId") or data.get("RequestId") or "")

    # -- callbacks -------------------------------------------------------------------------------
    @classmethod
    def verify_callback(cls, callback: Callback, secret: str) -> None:
        """Nothing to check: Alibaba does not sign its pushes (the URL token proves them)."""

    @classmethod
    def parse_receipts(cls, callback: Callback) -> list[Receipt]:
        """SmsReport records; ``out_id`` is our reference, ``biz_id`` Alibaba's message id."""
        reports = decode_json(callback.body, list[AlibabaReport], "malformed_receipt")
        return [
            Receipt(r.biz_id, r.success, r.err_code or None, r.out_id or None, r.report_time or None)
            for r in reports
        ]

    @classmethod
    def parse_replies(cls, callback: Callback) -> list[InboundReply]:
        """SmsUp records; no message id in them: the member is matched by number and signature (brand)."""
        records = decode_json(callback.body, list[AlibabaReply], "malformed_reply")
        return [InboundReply(r.phone_number, r.content, signature_brand(r.sign_name)) for r in records]

    @classmethod
    def receipts_ack(cls, received: int, applied: int) -> Ack:
        """Code 0: taken."""
        return Ack.json({"code": 0, "msg": "成功"})

    @classmethod
    def replies_ack(cls, outcomes: Sequence[Mapping[str, str]]) -> Ack:
        """Code 0: received."""
        return Ack.json({"code": 0, "msg": "接收成功"})
