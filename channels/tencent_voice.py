"""Tencent Cloud Voice Messaging (VMS, API 2020-09-02): ``SendTtsVoice``, a template voice notification call.

URL: ``tencent-voice://SecretId:SecretKey@vms.tencentcloudapi.com/?voice_sdk_app_id=1400000000
&region=ap-guangzhou&templates=points_expiry:1001(name|points|days)&template_id=1000&play_times=2``

The wire format (cloud.tencent.com/document/api/1128/51558, "SendTtsVoice"): a POST to
vms.tencentcloudapi.com signed with TC3-HMAC-SHA256 for service ``vms`` (the SMS signer,
``channels/tencent.py`` ``authorization``), action ``SendTtsVoice``, version 2020-09-02, a JSON body
with ``TemplateId`` (an approved template), ``TemplateParamSet`` (its params in order, the whole
call at most 350 characters), ``CalledNumber`` (E.164, ``+8613711112222``), ``VoiceSdkAppid``,
``PlayTimes`` (at most 3, default 2) and ``SessionContext`` (our reference, echoed in the answer).
The answer is ``Response.SendStatus.CallId``, or ``Response.Error`` with a code: throttling and
trouble on Tencent's side retry, any other code is permanent. The default request limit is 20/s.

Receipts (cloud.tencent.com/document/api/1128/37725, "语音通知状态通知"): one call per callback,
``{"voiceprompt_callback": {"result": "0", "callid": ...}}``, result 0 answered (delivered), 1 not
answered, 2 call failed (undelivered); and (document/product/382/6532) ``{"voice_failure_callback":
{"callid", "failure_code", "failure_reason"}}`` for a call that could not be put through (powered
off 1, busy 2, no answer 5, empty number 8, ...). The provider's code is kept as ``result=1`` or
``failure_code=8``. The callbacks name only the ``callid`` (the CallId the send returned); they are
not signed (the URL token proves them) and are answered ``{"result": 0, "errmsg": "OK"}``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import httpx
import msgspec

from channels.base import (
    Ack,
    Callback,
    CallbackAuth,
    InboundReply,
    MalformedCallback,
    Message,
    Receipt,
    SendResult,
    decode_json,
)
from channels.tencent import ACK, TencentApi, is_transient, template_map
from channels.urls import ProviderURL

VERSION = "2020-09-02"
SERVICE = "vms"
MAX_CONTENT = 350  # "语音消息的内容长度不超过350字"


def transient(code: str) -> bool:
    """The SMS API's transient codes, VMS's upstream time-out, and any limit (the number's flow control)."""
    return (
        is_transient(code)
        or code == "FailedOperation.AccessUpstreamTimeout"
        or code.startswith("LimitExceeded")
    )


class PromptCallback(msgspec.Struct):
    """The ``voiceprompt_callback`` of a voice notification."""

    result: str | int
    callid: str
    accept_time: str = ""
    end_calltime: str = ""
    mobile: str = ""
    nationcode: str = ""


class FailureCallback(msgspec.Struct):
    """The ``voice_failure_callback`` of a call that could not be put through."""

    callid: str
    failure_code: int | str
    failure_reason: str = ""
    mobile: str = ""


class VoiceCallback(msgspec.Struct):
    """One callback: a status, or a failure reason."""

    voiceprompt_callback: PromptCallback | None = None
    voice_failure_callback: FailureCallback | None = None


class TencentVoice(TencentApi):
    """SendTtsVoice, one number per call."""

    service: ClassVar[str] = SERVICE
    version: ClassVar[str] = VERSION
    product: ClassVar[str] = "Tencent voice"
    transient = staticmethod(transient)

    channels: ClassVar[frozenset[str]] = frozenset({"voice"})
    title_maxlen: ClassVar[int] = 0
    body_maxlen: ClassVar[int] = MAX_CONTENT
    callback_auth: ClassVar[CallbackAuth] = CallbackAuth.URL_TOKEN

    def __init__(
        self, url: ProviderURL, *, name: str = "tencent-voice", timeout: float = 5.0, **kw: Any
    ) -> None:
        super().__init__(name, timeout=timeout, **kw)
        url.require("voice_sdk_app_id")
        if not url.user or not url.secret:
            raise ValueError(f"{url.redacted()}: SecretId and SecretKey are required")
        self.url = url
        self.templates = template_map(url.option("templates"))
        self.default_template = url.option("template_id")
        if not self.templates and not self.default_template:
            raise ValueError(
                f"{url.redacted()}: give templates (name:ID(params)) or template_id for free text"
            )
        play = url.option("play_times", "2") or "2"
        if play not in ("1", "2", "3"):
            raise ValueError(f"{url.redacted()}: play_times must be 1 to 3")
        self.play_times = int(play)

    def __repr__(self) -> str:
        return f"TencentVoice({self.url.redacted()})"

    def request_parts(
        self, message: Message, timestamp: int | None = None
    ) -> tuple[bytes, dict[str, str]] | SendResult:
        """The body and headers of a SendTtsVoice call, or REJECTED when no template fits."""
        template = self.template_for(message)
        if isinstance(template, SendResult):
            return template
        template_id, values = template
        if sum(map(len, values)) > MAX_CONTENT:
            return self.rejected(
                "content_too_long", f"the call's params exceed Tencent's {MAX_CONTENT} characters"
            )
        payload = {
            "TemplateId": template_id,
            "TemplateParamSet": values,
            "CalledNumber": message.to,
            "VoiceSdkAppid": self.url.option("voice_sdk_app_id"),
            "PlayTimes": self.play_times,
            "SessionContext": message.reference,
        }
        return self.signed("SendTtsVoice", payload, timestamp)

    def result(self, resp: httpx.Response) -> SendResult:
        """A request error (transient or permanent by its code), or the call's CallId."""
        body = self.answer(resp)
        if isinstance(body, SendResult):
            return body
        status = body.get("SendStatus")
        if isinstance(status, dict) and status.get("CallId"):
            return self.sent(str(status["CallId"]))
        return self.retry("no_call_id", "the answer names no CallId")

    # -- callbacks -------------------------------------------------------------------------------
    @classmethod
    def verify_callback(cls, callback: Callback, secret: str) -> None:
        """Nothing to check: Tencent does not sign its callbacks (the URL token proves them)."""

    @classmethod
    def parse_receipts(cls, callback: Callback) -> list[Receipt]:
        """One call's outcome: answered (result 0) is delivered, the rest undelivered, the code kept."""
        got = decode_json(callback.body, VoiceCallback, "malformed_receipt")
        if got.voiceprompt_callback is not None:
            p = got.voiceprompt_callback
            result = str(p.result)
            return [
                Receipt(p.callid, result == "0", f"result={result}", None, p.end_calltime or None, "voice")
            ]
        if got.voice_failure_callback is not None:
            f = got.voice_failure_callback
            return [Receipt(f.callid, False, f"failure_code={f.failure_code}", None, None, "voice")]
        raise MalformedCallback(
            "malformed_receipt", "neither voiceprompt_callback nor voice_failure_callback"
        )

    @classmethod
    def parse_replies(cls, callback: Callback) -> list[InboundReply]:
        """A call takes no text reply."""
        return []

    @classmethod
    def receipts_ack(cls, received: int, applied: int) -> Ack:
        """Result 0: taken."""
        return ACK

    @classmethod
    def replies_ack(cls, outcomes: Sequence[Mapping[str, str]]) -> Ack:
        """Result 0."""
        return ACK
