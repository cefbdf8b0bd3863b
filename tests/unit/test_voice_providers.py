"""The voice adapters on their own: signatures checked independently, answers mapped, receipts read.

Request signatures go through the stand-ins' own checks (``tests/providers.py``, written from the
providers' published algorithms); receipt bodies are shaped like the providers' documented examples
(Alibaba VoiceReport and VoiceCallReport, Tencent voiceprompt_callback and voice_failure_callback).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl

import httpx
import pytest

from channels.aliyun_voice import AlibabaVoice, called_number
from channels.base import Callback, MalformedCallback, Message, Outcome, SendResult
from channels.registry import KINDS, inbound
from channels.tencent_voice import TencentVoice
from channels.urls import parse_provider_url
from tests import providers as standin

ALIBABA = (
    "alibaba-voice://LTAI5tVoice:VoiceSecret1@dyvmsapi.aliyuncs.com/?called_show_number=057100000000"
    "&tts_codes=points_expiry:TTS_1001&tts_code=TTS_1000&play_times=2&volume=80"
)
TENCENT = (
    "tencent-voice://AKIDVoice:VoiceKey1@vms.tencentcloudapi.com/?voice_sdk_app_id=1400006666"
    "&templates=points_expiry:4356(name|points|days)&template_id=4350"
)


def call(**kw: Any) -> Message:
    fields: dict[str, Any] = {
        "reference": "acme:ntf_01VOICE",
        "tenant": "acme",
        "channel": "voice",
        "to": "+8613800138000",
        "text": "您好,您的28600积分将于12天后清零。",
        "template": "points_expiry",
        "params": {"name": "李女士", "points": 28600, "days": 12},
    }
    return Message(**(fields | kw))


def capture(
    answer: Callable[[httpx.Request], httpx.Response],
) -> tuple[httpx.MockTransport, list[httpx.Request]]:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return answer(request)

    return httpx.MockTransport(handler), seen


def alibaba(answer: dict[str, Any], status: int = 200) -> tuple[AlibabaVoice, list[httpx.Request]]:
    transport, seen = capture(lambda _: httpx.Response(status, json=answer))
    return AlibabaVoice(parse_provider_url(ALIBABA, environ={}), transport=transport), seen


def tencent(answer: dict[str, Any], status: int = 200) -> tuple[TencentVoice, list[httpx.Request]]:
    transport, seen = capture(lambda _: httpx.Response(status, json=answer))
    return TencentVoice(parse_provider_url(TENCENT, environ={}), transport=transport), seen


def send(adapter: AlibabaVoice | TencentVoice, message: Message) -> SendResult:
    return asyncio.run(adapter.send(message))


def test_both_kinds_are_registered_and_read_callbacks() -> None:
    assert KINDS["alibaba-voice"] is AlibabaVoice and KINDS["tencent-voice"] is TencentVoice
    assert inbound("alibaba-voice") is AlibabaVoice and inbound("tencent-voice") is TencentVoice
    assert AlibabaVoice.channels == TencentVoice.channels == frozenset({"voice"})


def test_what_the_alibaba_voice_adapter_sends_passes_the_independent_rpc_check() -> None:
    adapter, seen = alibaba({"Code": "OK", "Message": "OK", "RequestId": "r1", "CallId": "116012354148^1"})
    result = send(adapter, call())
    assert (result.outcome, result.provider_message_id) == (Outcome.SENT, "116012354148^1")
    params = dict(parse_qsl(seen[0].content.decode(), keep_blank_values=True))
    assert (params["Action"], params["Version"], seen[0].url.host) == (
        "SingleCallByTts",
        "2017-05-25",
        "dyvmsapi.aliyuncs.com",
    )
    assert (params["CalledNumber"], params["CalledShowNumber"], params["TtsCode"]) == (
        "13800138000",
        "057100000000",
        "TTS_1001",
    )
    assert (params["PlayTimes"], params["Volume"]) == ("2", "80")
    assert standin.alibaba_signature_ok("VoiceSecret1", "POST", params)
    assert not standin.alibaba_signature_ok("OtherSecret", "POST", params)
    assert not standin.alibaba_signature_ok("VoiceSecret1", "POST", {**params, "CalledNumber": "13900139000"})


def test_a_fixed_line_is_called_with_its_trunk_prefix() -> None:
    assert called_number("+8613800138000") == "13800138000"
    assert called_number("+861012345678") == "01012345678"
    assert called_number("+85291234567") == "85291234567"


@pytest.mark.parametrize(
    ("answer", "status", "outcome", "code"),
    [
        (
            {"Code": "isv.BUSINESS_LIMIT_CONTROL", "Message": "触发流控"},
            200,
            Outcome.RETRY,
            "isv.BUSINESS_LIMIT_CONTROL",
        ),
        ({"Code": "isp.SYSTEM_ERROR", "Message": "系统错误"}, 200, Outcome.RETRY, "isp.SYSTEM_ERROR"),
        ({"Code": "ServiceUnavailable", "Message": "x"}, 503, Outcome.RETRY, "ServiceUnavailable"),
        (
            {"Code": "isv.MOBILE_NUMBER_ILLEGAL", "Message": "号码格式非法"},
            200,
            Outcome.REJECTED,
            "isv.MOBILE_NUMBER_ILLEGAL",
        ),
        (
            {"Code": "isv.TTS_TEMPLATE_ILLEGAL", "Message": "TTS模板不合法"},
            200,
            Outcome.REJECTED,
            "isv.TTS_TEMPLATE_ILLEGAL",
        ),
        (
            {"Code": "isv.PARAM_NOT_SUPPORT_URL", "Message": "变量不支持URL参数"},
            200,
            Outcome.REJECTED,
            "isv.PARAM_NOT_SUPPORT_URL",
        ),
    ],
)
def test_alibaba_voice_answers_map_to_outcomes(
    answer: dict[str, Any], status: int, outcome: Outcome, code: str
) -> None:
    adapter, _ = alibaba(answer, status)
    result = send(adapter, call())
    assert (result.outcome, result.code) == (outcome, code)


def test_alibaba_tts_param_over_250_is_refused_before_the_call() -> None:
    adapter, seen = alibaba({"Code": "OK", "CallId": "1^1"})
    result = send(adapter, call(template=None, params={}, text="积" * 240))
    assert (result.outcome, result.code) == (Outcome.REJECTED, "tts_param_too_long")
    assert seen == []
    # Free text that fits goes through the default template as its content variable.
    assert send(adapter, call(template=None, params={}, text="积分提醒")).outcome is Outcome.SENT
    params = dict(parse_qsl(seen[0].content.decode()))
    assert (params["TtsCode"], params["TtsParam"]) == ("TTS_1000", '{"content":"积分提醒"}')


def test_what_the_tencent_voice_adapter_sends_passes_the_independent_tc3_check() -> None:
    answer = {
        "Response": {
            "SendStatus": {"CallId": "12582bce-4", "SessionContext": "acme:ntf_01VOICE"},
            "RequestId": "r",
        }
    }
    adapter, seen = tencent(answer)
    result = send(adapter, call())
    assert (result.outcome, result.provider_message_id) == (Outcome.SENT, "12582bce-4")
    request = seen[0]
    headers = {k.lower(): v for k, v in request.headers.items()}
    assert (headers["x-tc-action"], headers["x-tc-version"], request.url.host) == (
        "SendTtsVoice",
        "2020-09-02",
        "vms.tencentcloudapi.com",
    )
    body = json.loads(request.content)
    assert body == {
        "TemplateId": "4356",
        "TemplateParamSet": ["李女士", "28600", "12"],
        "CalledNumber": "+8613800138000",
        "VoiceSdkAppid": "1400006666",
        "PlayTimes": 2,
        "SessionContext": "acme:ntf_01VOICE",
    }
    ok = standin.tencent_authorization_ok
    assert ok("AKIDVoice", "VoiceKey1", "vms", "POST", request.url.path, headers, request.content)
    assert not ok("AKIDVoice", "VoiceKey1", "sms", "POST", request.url.path, headers, request.content)
    assert not ok("AKIDVoice", "OtherKey", "vms", "POST", request.url.path, headers, request.content)


@pytest.mark.parametrize(
    ("code", "outcome"),
    [
        ("RequestLimitExceeded", Outcome.RETRY),
        ("InternalError", Outcome.RETRY),
        ("FailedOperation.AccessUpstreamTimeout", Outcome.RETRY),
        ("LimitExceeded.DeliveryFrequencyLimit", Outcome.RETRY),
        ("FailedOperation.InvalidParameters", Outcome.REJECTED),
        ("FailedOperation.ContainSensitiveWord", Outcome.REJECTED),
        ("AuthFailure.SignatureFailure", Outcome.REJECTED),
    ],
)
def test_tencent_voice_errors_map_to_outcomes(code: str, outcome: Outcome) -> None:
    adapter, _ = tencent({"Response": {"Error": {"Code": code, "Message": "x"}, "RequestId": "r"}})
    result = send(adapter, call())
    assert (result.outcome, result.code) == (outcome, code)


def test_a_template_param_missing_is_refused_before_the_tencent_call() -> None:
    adapter, seen = tencent({"Response": {"SendStatus": {"CallId": "c"}}})
    result = send(adapter, call(params={"name": "李女士"}))
    assert (result.outcome, result.code) == (Outcome.REJECTED, "missing_param") and seen == []


def receipts(cls: type[AlibabaVoice] | type[TencentVoice], body: Any) -> list[Any]:
    raw = json.dumps(body, ensure_ascii=False).encode()
    return cls.parse_receipts(Callback(raw, "https://gw.example.com/v1/inbound/x/receipts"))


def test_alibaba_voice_report_answered_is_delivered_and_other_ends_undelivered() -> None:
    report = {
        "status_code": "200000",
        "callee": "138****8000",
        "ring_time": "2021-04-28 10:02:40",
        "duration": "10",
        "voice_type": "voice",
        "originate_time": "2021-04-28 10:02:34",
        "end_time": "2021-04-28 10:03:40",
        "call_id": "122628733198^10942206****",
        "caller": "20200900****",
        "status_msg": "执行完成",
        "out_id": "",
        "toll_type": "LOCAL",
    }
    busy = {**report, "status_code": "200002", "duration": "0", "call_id": "2^2"}
    unanswered = {**report, "status_code": "200003", "duration": "0", "call_id": "3^3"}
    early = {**report, "status_code": "200001", "call_id": "4^4"}
    got = receipts(AlibabaVoice, [report, busy, unanswered, early])
    assert [(r.provider_message_id, r.delivered, r.code, r.channel) for r in got] == [
        ("122628733198^10942206****", True, "200000", "voice"),
        ("2^2", False, "200002", "voice"),
        ("3^3", False, "200003", "voice"),
        ("4^4", True, "200001", "voice"),
    ]
    assert got[0].reference is None and got[0].at == "2021-04-28 10:03:40"


def test_alibaba_voice_call_progress_reports_are_dropped() -> None:
    progress = [
        {"status_code": "200101", "status_time": "2021-04-28 09:55:02", "out_id": "", "call_id": "1^1"},
        {"status_code": "200102", "status_time": "2021-04-28 09:55:09", "out_id": "", "call_id": "1^1"},
        {"status_code": "200100", "status_time": "2021-04-28 09:55:30", "out_id": "", "call_id": "1^1"},
    ]
    assert receipts(AlibabaVoice, progress) == []
    assert json.loads(AlibabaVoice.receipts_ack(0, 0).body) == {"code": 0, "msg": "接收成功"}
    with pytest.raises(MalformedCallback):
        receipts(AlibabaVoice, {"status_code": "200000"})  # not an array


def test_tencent_voiceprompt_callbacks_map_answered_to_delivered() -> None:
    prompt = {
        "result": "0",
        "accept_time": "1470197211",
        "call_from": "",
        "callid": "xxxxxx",
        "end_calltime": "1470197221",
        "fee": "1",
        "mobile": "13800138000",
        "nationcode": "86",
        "start_calltime": "1470197196",
    }
    [answered] = receipts(TencentVoice, {"voiceprompt_callback": prompt})
    assert (answered.provider_message_id, answered.delivered, answered.code) == ("xxxxxx", True, "result=0")
    [missed] = receipts(TencentVoice, {"voiceprompt_callback": {**prompt, "result": "1"}})
    assert (missed.delivered, missed.code) == (False, "result=1")
    [failed] = receipts(TencentVoice, {"voiceprompt_callback": {**prompt, "result": "2"}})
    assert (failed.delivered, failed.code, failed.channel) == (False, "result=2", "voice")


def test_tencent_voice_failure_callback_is_undelivered_with_its_code() -> None:
    failure = {
        "call_from": "075583763333",
        "callid": "yyyyyy",
        "failure_code": 8,
        "failure_reason": "空号",
        "mobile": "13800138000",
        "nationcode": "86",
    }
    [r] = receipts(TencentVoice, {"voice_failure_callback": failure})
    assert (r.provider_message_id, r.delivered, r.code) == ("yyyyyy", False, "failure_code=8")
    with pytest.raises(MalformedCallback):
        receipts(TencentVoice, {"voicecode_unknown": {}})
    assert TencentVoice.receipts_ack(1, 1).body == b'{"result":0,"errmsg":"OK"}'


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("alibaba-voice://id:s@dyvmsapi.aliyuncs.com/", "tts_codes"),
        ("alibaba-voice://id:s@dyvmsapi.aliyuncs.com/?tts_code=T&play_times=4", "play_times"),
        ("tencent-voice://id:s@vms.tencentcloudapi.com/?template_id=1", "voice_sdk_app_id"),
        (
            "tencent-voice://id:s@vms.tencentcloudapi.com/?voice_sdk_app_id=1&template_id=1&play_times=0",
            "play_times",
        ),
    ],
)
def test_a_voice_provider_url_missing_what_it_needs_is_refused_without_its_secret(
    url: str, problem: str
) -> None:
    parsed = parse_provider_url(url, environ={})
    cls = KINDS[parsed.kind]
    with pytest.raises(ValueError, match=problem) as err:
        cls(parsed, name="v", timeout=1.0, pool_size=1)
    assert ":s@" not in str(err.value)
