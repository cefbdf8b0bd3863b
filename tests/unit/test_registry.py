"""The provider registry: every built-in kind registered once, a taken name refused."""

from __future__ import annotations

import pytest

from channels import KINDS, register
from channels.aliyun import AlibabaSms
from channels.aliyun_voice import AlibabaVoice
from channels.apns import ApnsPush
from channels.fcm import FcmPush
from channels.simulator import SimulatorAdapter
from channels.smtp import SmtpEmail
from channels.tencent import TencentSms
from channels.tencent_voice import TencentVoice
from channels.twilio import TwilioMessages
from channels.webhook import Webhook
from channels.wechat import WechatSubscribe


def test_the_built_in_adapters_are_registered_by_kind() -> None:
    assert dict(KINDS) == {
        "alibaba": AlibabaSms,
        "tencent": TencentSms,
        "alibaba-voice": AlibabaVoice,
        "tencent-voice": TencentVoice,
        "twilio": TwilioMessages,
        "webhook": Webhook,
        "smtp": SmtpEmail,
        "fcm": FcmPush,
        "apns": ApnsPush,
        "wechat": WechatSubscribe,
        "simulator": SimulatorAdapter,
    }


def test_a_duplicate_kind_is_refused_and_the_first_stays() -> None:
    with pytest.raises(
        ValueError, match=r"provider kind 'twilio' is already registered \(to channels\.twilio\."
    ):
        register("twilio", SimulatorAdapter)
    with pytest.raises(ValueError, match="already registered"):
        register("twilio", TwilioMessages)  # the same class again is refused too
    assert KINDS["twilio"] is TwilioMessages


def test_the_registry_is_changed_by_register_only() -> None:
    with pytest.raises(TypeError):
        KINDS["other"] = TwilioMessages  # type: ignore[index]
