"""Tencent Cloud SMS (API 2021-01-11): ``SendSms`` signed with TC3-HMAC-SHA256, our id as ``SessionContext``.

URL: ``tencent://SecretId:SecretKey@sms.tencentcloudapi.com/?sdk_app_id=1400000000&sign_name=星耀商城
&region=ap-guangzhou&templates=points_expiry:1001(name|points|days)&template_id=1000``

``templates`` maps a catalogue template to a Tencent template id and the order of its params
(Tencent takes them as a list); ``template_id`` sends free text as the only param. A send that
timed out is sent again (Tencent has no look-up by ``SessionContext``); receipts carry the
``SessionContext`` back, so both tie to one notification.

Callbacks (status reports as a JSON array, one reply per call) are not signed: the callback URL
carries ``?tenant=T&token=...`` (the gateway's token for the tenant). Each is answered
``{"result": 0, "errmsg": "OK"}``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, ClassVar

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

CONTENT_TYPE = "application/json; charset=utf-8"
VERSION = "2021-01-11"
_ENTRY = re.compile(r"^\s*([^:]+):\s*([0-9A-Za-z_-]+)\s*(?:\(([^)]*)\))?\s*$")

# Tencent Cloud API 3.0 signature, TC3-HMAC-SHA256.
# CanonicalRequest = METHOD \n URI \n QUERY \n canonical headers \n signed headers \n hex(sha256(payload))
# StringToSign = "TC3-HMAC-SHA256" \n timestamp \n date/service/tc3_request \n hex(sha256(CanonicalRequest))
# The key is derived: HMAC("TC3"+SecretKey, date) -> service -> "tc3_request"; the signature is the
# hex HMAC-SHA256 of StringToSign with it. ``date`` is the UTC date of the timestamp.
ALGORITHM = "TC3-HMAC-SHA256"
SIGNED_HEADERS = "content-type;host"


def _hmac(key: bytes, msg: str) -> bytes:
    return hmac.new(key, msg.encode(), hashlib.sha256).digest()


def canonical_request(host: str, content_type: str, payload: bytes, method: str = "POST") -> str:
    """The canonical request of a POST to ``/`` with content-type and host signed."""
    headers = f"content-type:{content_type}\nhost:{host}\n"
    return f"{method}\n/\n\n{headers}\n{SIGNED_HEADERS}\n{hashlib.sha256(payload).hexdigest()}"


def credential_date(timestamp: int) -> str:
    """The UTC date of the request, as the credential scope names it."""
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d")


def signature(secret_key: str, service: str, timestamp: int, canonical: str) -> str:
    """The hex signature."""
    date = credential_date(timestamp)
    scope = f"{date}/{service}/tc3_request"
    to_sign = f"{ALGORITHM}\n{timestamp}\n{scope}\n{hashlib.sha256(canonical.encode()).hexdigest()}"
    key = _hmac(_hmac(_hmac(f"TC3{secret_key}".encode(), date), service), "tc3_request")
    return hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()


def authorization(
    secret_id: str,
    secret_key: str,
    service: str,
    host: str,
    content_type: str,
    payload: bytes,
    timestamp: int,
) -> str:
    """The ``Authorization`` header."""
    sig = signature(secret_key, service, timestamp, canonical_request(host, content_type, payload))
    scope = f"{credential_date(timestamp)}/{service}/tc3_request"
    return f"{ALGORITHM} Credential={secret_id}/{scope}, SignedHeaders={SIGNED_HEADERS}, Signature={sig}"


def is_transient(code: str) -> bool:
    """Tencent's codes for trouble on its side or throttling."""
    return (
        code.startswith("InternalError")
        or code.startswith("ResourceUnavailable")
        or code == "RequestLimitExceeded"
        or code.startswith("LimitExceeded.PhoneNumberThirtySecondLimit")
    )


def template_map(option: str | None) -> dict[str, tuple[str, list[str]]]:
    """``name:ID(p1|p2),other:ID2`` as {name: (ID, [p1, p2])}."""
    out: dict[str, tuple[str, list[str]]] = {}
    for item in (option or "").split(","):
        if not item.strip():
            continue
        m = _ENTRY.match(item)
        if m is None:
            raise ValueError(f"tencent templates entry {item!r} is not name:ID(param|param)")
        out[m.group(1).strip()] = (
            m.group(2),
            [p.strip() for p in (m.group(3) or "").split("|") if p.strip()],
        )
    return out


class TencentReport(msgspec.Struct):
    """One status report of Tencent Cloud SMS's callback."""

    report_status: str
    sid: str = ""
    errmsg: str = ""
    description: str = ""
    mobile: str = ""
    user_receive_time: str = ""


class TencentReply(msgspec.Struct):
    """Tencent Cloud SMS reply callback (one reply per call)."""

    mobile: str
    text: str
    nationcode: str = "86"
    sign: str | None = None
    time: int | None = None
    extend: str | None = None


ACK = Ack.json({"result": 0, "errmsg": "OK"})


class TencentApi(HttpAdapter):
    """What Tencent Cloud's API 3.0 products share (SMS SendSms, VMS SendTtsVoice): the template a
    message maps to, the TC3-signed POST, and the ``Response.Error`` every answer may carry."""

    service: ClassVar[str]
    version: ClassVar[str]
    product: ClassVar[str] = "Tencent"  # in what a refusal says
    url: ProviderURL
    templates: dict[str, tuple[str, list[str]]]
    default_template: str | None

    @staticmethod
    def transient(code: str) -> bool:
        """Whether an error code is worth trying again."""
        return is_transient(code)

    def template_for(self, message: Message) -> tuple[str, list[str]] | SendResult:
        """The template id and its values in the registered order; REJECTED when none fits or a
        value is missing (free text goes through the default template)."""
        mapped = self.templates.get(message.template or "")
        if mapped is not None:
            template_id, names = mapped
            missing = [n for n in names if n not in message.params]
            if missing:
                return self.rejected(
                    "missing_param", f"Tencent template {template_id} needs {', '.join(missing)}"
                )
            return template_id, [str(message.params[n]) for n in names]
        if self.default_template and message.text:
            return self.default_template, [message.text]
        return self.rejected(
            "no_provider_template",
            f"no {self.product} template is configured for {message.template or 'free text'}",
        )

    def signed(
        self, action: str, payload: Mapping[str, Any], timestamp: int | None
    ) -> tuple[bytes, dict[str, str]]:
        """The JSON body and the TC3-HMAC-SHA256 headers of one call."""
        body = json.dumps(payload, ensure_ascii=False).encode()
        ts = int(time.time()) if timestamp is None else timestamp
        host = self.url.host + (f":{self.url.port}" if self.url.port else "")
        headers = {
            "Authorization": authorization(
                self.url.user, self.url.secret, self.service, host, CONTENT_TYPE, body, ts
            ),
            "Content-Type": CONTENT_TYPE,
            "Host": host,
            "X-TC-Action": action,
            "X-TC-Timestamp": str(ts),
            "X-TC-Version": self.version,
            "X-TC-Region": self.url.option("region", "ap-guangzhou") or "ap-guangzhou",
        }
        return body, headers

    def request_parts(
        self, message: Message, timestamp: int | None = None
    ) -> tuple[bytes, dict[str, str]] | SendResult:
        """The body and headers of one call, or REJECTED."""
        raise NotImplementedError

    async def send(self, message: Message) -> SendResult:
        """One call."""
        parts = self.request_parts(message)
        if isinstance(parts, SendResult):
            return parts
        body, headers = parts
        resp = await self.request("POST", f"{self.url.base}/", content=body, headers=headers)
        if isinstance(resp, SendResult):
            return resp
        return self.result(resp)

    def answer(self, resp: httpx.Response) -> dict[str, Any] | SendResult:
        """The ``Response`` object of an answer, or what its request error means: transient codes and
        5xx retry, any other error is permanent."""
        data = json_or_none(resp)
        body = data.get("Response") if isinstance(data, dict) else None
        if not isinstance(body, dict):
            return self.by_status(resp, None, "unreadable answer")
        error = body.get("Error")
        if isinstance(error, dict):
            code, detail = str(error.get("Code", "")), str(error.get("Message", ""))
            if self.transient(code):
                return self.retry(code, detail)
            return (
                self.by_status(resp, code, detail) if resp.status_code >= 500 else self.rejected(code, detail)
            )
        return body

    def result(self, resp: httpx.Response) -> SendResult:
        """Map the answer."""
        raise NotImplementedError


class TencentSms(TencentApi):
    """SendSms, one number per call."""

    service: ClassVar[str] = "sms"
    version: ClassVar[str] = VERSION

    channels: ClassVar[frozenset[str]] = frozenset({"sms"})
    title_maxlen: ClassVar[int] = 0
    callback_auth: ClassVar[CallbackAuth] = CallbackAuth.URL_TOKEN

    def __init__(self, url: ProviderURL, *, name: str = "tencent", timeout: float = 5.0, **kw: Any) -> None:
        super().__init__(name, timeout=timeout, **kw)
        url.require("sdk_app_id", "sign_name")
        if not url.user or not url.secret:
            raise ValueError(f"{url.redacted()}: SecretId and SecretKey are required")
        self.url = url
        self.templates = template_map(url.option("templates"))
        self.default_template = url.option("template_id")

    def __repr__(self) -> str:
        return f"TencentSms({self.url.redacted()})"

    def request_parts(
        self, message: Message, timestamp: int | None = None
    ) -> tuple[bytes, dict[str, str]] | SendResult:
        """The body and headers of a SendSms call, or REJECTED when no template fits."""
        template = self.template_for(message)
        if isinstance(template, SendResult):
            return template
        template_id, values = template
        payload = {
            "PhoneNumberSet": [message.to],
            "SmsSdkAppId": self.url.option("sdk_app_id"),
            "SignName": self.url.option("sign_name"),
            "TemplateId": template_id,
            "TemplateParamSet": values,
            "SessionContext": message.reference,
        }
        return self.signed("SendSms", payload, timestamp)

    def result(self, resp: httpx.Response) -> SendResult:
        """Map the answer: a request error, or the one number's SendStatus."""
        body = self.answer(resp)
        if isinstance(body, SendResult):
            return body
        statuses = body.get("SendStatusSet")
        status = (
            statuses[0] if isinstance(statuses, list) and statuses and isinstance(statuses[0], dict) else {}
        )
        code, detail = str(status.get("Code", "")), str(status.get("Message", ""))
        if code == "Ok":
            return self.sent(str(status.get("SerialNo") or body.get("RequestId") or ""))
        if is_transient(code):
            return self.retry(code, detail)
        return self.rejected(code or "unknown", detail)

    # -- callbacks -------------------------------------------------------------------------------
    @classmethod
    def verify_callback(cls, callback: Callback, secret: str) -> None:
        """Nothing to check: Tencent does not sign its callbacks (the URL token proves them)."""

    @classmethod
    def parse_receipts(cls, callback: Callback) -> list[Receipt]:
        """Status reports; they name only Tencent's message id (``sid``)."""
        reports = decode_json(callback.body, list[TencentReport], "malformed_receipt")
        return [
            Receipt(r.sid, r.report_status == "SUCCESS", r.errmsg or None, None, r.user_receive_time or None)
            for r in reports
        ]

    @classmethod
    def parse_replies(cls, callback: Callback) -> list[InboundReply]:
        """One reply; the number without its country code unless it has a ``+``."""
        reply = decode_json(callback.body, TencentReply, "malformed_reply")
        sender = reply.mobile if reply.mobile.startswith("+") else f"+{reply.nationcode}{reply.mobile}"
        return [InboundReply(sender, reply.text, signature_brand(reply.sign))]

    @classmethod
    def receipts_ack(cls, received: int, applied: int) -> Ack:
        """Result 0: taken."""
        return ACK

    @classmethod
    def replies_ack(cls, outcomes: Sequence[Mapping[str, str]]) -> Ack:
        """Result 0: taken."""
        return ACK
