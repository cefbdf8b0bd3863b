"""Alibaba Cloud Voice Service (dyvmsapi 2017-05-25): ``SingleCallByTts``, a text-to-speech notification call.

URL: ``alibaba-voice://AccessKeyId:AccessKeySecret@dyvmsapi.aliyuncs.com/?called_show_number=0571000000
&tts_codes=points_expiry:TTS_1001,points_credited:TTS_1002&tts_code=TTS_1000&content_param=content
&play_times=2&volume=100&speed=0``

The wire format (help.aliyun.com/document_detail/114035 and /393519, "SingleCallByTts"): an RPC call,
signed like SendSms (``channels/aliyun.py`` ``rpc_signature``), with ``CalledNumber`` (a mobile or
fixed-line number, without country code: 1390000****, 0571****5678), ``CalledShowNumber`` (the
caller id of dedicated mode; left out, the call goes in public mode), ``TtsCode`` (an approved TTS
template), ``TtsParam`` (its variables as JSON, under 250 characters in all, no links),
``PlayTimes`` 1-3, ``Volume`` 0-100, ``Speed`` -500-500 and ``OutId``. The answer is ``Code`` OK with a
``CallId``, or an error code (document_detail/178344, "API错误码"): ``isv.BUSINESS_LIMIT_CONTROL``
is the per-number flow control (1 a minute, 5 an hour, 20 a day), retried; a bad number or template
is permanent.

``OutId`` takes 1 to 15 bytes, so our reference (``tenant:ntf_...``) does not fit: receipts are tied
to the notification by the ``CallId`` the send returned (the gateway keeps it). A send that timed
out is sent again (no look-up by our id), like SMS.

Receipts (help.aliyun.com/zh/vms/voicereport-6, "VoiceReport", HTTP batch push): a JSON array of
call records after the call ended, ``status_code`` 200000 (heard it all) or 200001 (hung up
early) for an answered call, every other final code (busy 200002, no answer 200003, bad number
200004, unreachable 200005, powered off 200010, ...; document_detail/55085) undelivered. The
progress reports of VoiceCallReport (ringing, answered, ended: they carry ``status_time``, no
``duration``) are dropped. Pushes are not signed (the URL token proves them) and are answered
``{"code": 0, "msg": "接收成功"}``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, ClassVar

import msgspec

from channels.aliyun import AlibabaRpc, mapping
from channels.base import Ack, Callback, CallbackAuth, InboundReply, Message, Receipt, SendResult, decode_json
from channels.urls import ProviderURL

VERSION = "2017-05-25"
MAX_TTS_PARAM = 249  # "模板变量整体长度必须小于 250 个字符"
# Final call outcomes that mean the member took the call.
ANSWERED = frozenset({"200000", "200001"})
# VoiceCallReport's progress codes: calling, ringing, answered, ended, a key press.
PROGRESS = frozenset({"200101", "200201", "200102", "200100", "300000"})


def called_number(e164: str) -> str:
    """A mainland number as Alibaba writes it (mobile 13812345678, fixed line 01012345678); others as
    country code + number."""
    digits = e164.lstrip("+")
    if not digits.startswith("86"):
        return digits
    national = digits[2:]
    return national if national.startswith("1") and len(national) == 11 else f"0{national}"


class VoiceRecord(msgspec.Struct):
    """One record of Alibaba's VoiceReport (or VoiceCallReport) push."""

    status_code: str
    call_id: str = ""
    out_id: str = ""
    status_msg: str = ""
    status_time: str | None = None  # VoiceCallReport: a progress report
    end_time: str | None = None
    duration: str | int | None = None
    callee: str = ""


class AlibabaVoice(AlibabaRpc):
    """SingleCallByTts, one call per request."""

    action: ClassVar[str] = "SingleCallByTts"
    product: ClassVar[str] = "Alibaba TTS"

    channels: ClassVar[frozenset[str]] = frozenset({"voice"})
    title_maxlen: ClassVar[int] = 0
    body_maxlen: ClassVar[int] = MAX_TTS_PARAM
    callback_auth: ClassVar[CallbackAuth] = CallbackAuth.URL_TOKEN

    def __init__(
        self, url: ProviderURL, *, name: str = "alibaba-voice", timeout: float = 5.0, **kw: Any
    ) -> None:
        super().__init__(name, timeout=timeout, **kw)
        if not url.user or not url.secret:
            raise ValueError(f"{url.redacted()}: AccessKeyId and AccessKeySecret are required")
        self.url = url
        self.templates = mapping(url.option("tts_codes"))
        self.default_template = url.option("tts_code")
        if not self.templates and not self.default_template:
            raise ValueError(f"{url.redacted()}: give tts_codes (template:TTS_...) or tts_code for free text")
        self.content_param = url.option("content_param", "content") or "content"
        self.extra: dict[str, str] = {}
        for option, param, low, high in (
            ("play_times", "PlayTimes", 1, 3),
            ("volume", "Volume", 0, 100),
            ("speed", "Speed", -500, 500),
        ):
            value = url.option(option)
            if value is None:
                continue
            if not value.lstrip("-").isdigit() or not low <= int(value) <= high:
                raise ValueError(f"{url.redacted()}: {option} must be {low} to {high}")
            self.extra[param] = value
        show = url.option("called_show_number")
        if show:
            self.extra["CalledShowNumber"] = show

    def __repr__(self) -> str:
        return f"AlibabaVoice({self.url.redacted()})"

    def request_params(self, message: Message, now: datetime | None = None) -> dict[str, str] | SendResult:
        """The signed parameters of a SingleCallByTts call, or REJECTED when no template fits."""
        template = self.template_for(message)
        if isinstance(template, SendResult):
            return template
        code, variables = template
        tts_param = json.dumps(variables, ensure_ascii=False, separators=(",", ":"))
        if len(tts_param) > MAX_TTS_PARAM:
            return self.rejected(
                "tts_param_too_long", f"TtsParam is {len(tts_param)} characters; Alibaba takes under 250"
            )
        return self.signed(
            {"CalledNumber": called_number(message.to), "TtsCode": code, "TtsParam": tts_param, **self.extra},
            now,
        )

    def message_id(self, data: Mapping[str, Any]) -> str | None:
        """The CallId (the receipts name it); an OK answer without one is not a call."""
        return str(data["CallId"]) if data.get("CallId") else None

    # -- callbacks -------------------------------------------------------------------------------
    @classmethod
    def verify_callback(cls, callback: Callback, secret: str) -> None:
        """Nothing to check: Alibaba does not sign its pushes (the URL token proves them)."""

    @classmethod
    def parse_receipts(cls, callback: Callback) -> list[Receipt]:
        """VoiceReport records: answered (200000, 200001) is delivered, any other end undelivered,
        the provider's status code kept; VoiceCallReport progress is dropped."""
        records = decode_json(callback.body, list[VoiceRecord], "malformed_receipt")
        return [
            Receipt(
                r.call_id,
                r.status_code in ANSWERED,
                r.status_code,
                None,  # our reference does not fit OutId: the CallId finds the notification
                r.end_time or None,
                "voice",
            )
            for r in records
            if r.call_id
            and r.status_code not in PROGRESS
            and (r.status_time is None or r.duration is not None)
        ]

    @classmethod
    def parse_replies(cls, callback: Callback) -> list[InboundReply]:
        """A call takes no text reply."""
        return []

    @classmethod
    def receipts_ack(cls, received: int, applied: int) -> Ack:
        """Code 0: taken (anything but a number makes Alibaba push again)."""
        return Ack.json({"code": 0, "msg": "接收成功"})

    @classmethod
    def replies_ack(cls, outcomes: Sequence[Mapping[str, str]]) -> Ack:
        """Code 0."""
        return Ack.json({"code": 0, "msg": "接收成功"})
