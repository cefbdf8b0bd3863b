"""Provider adapters behind one Protocol; which ones run, and in which order, is channels.routing.

The built-in adapters are registered here, one line each (no directory scanning).
"""

from __future__ import annotations

from channels.aliyun import AlibabaSms
from channels.aliyun_voice import AlibabaVoice
from channels.apns import ApnsPush
from channels.base import Adapter, Message, Outcome, SendResult
from channels.fcm import FcmPush
from channels.registry import KINDS, register
from channels.simulator import SimulatorAdapter
from channels.smtp import SmtpEmail
from channels.tencent import TencentSms
from channels.tencent_voice import TencentVoice
from channels.twilio import TwilioMessages
from channels.webhook import Webhook
from channels.wechat import WechatSubscribe

register("alibaba", AlibabaSms)
register("tencent", TencentSms)
register("alibaba-voice", AlibabaVoice)
register("tencent-voice", TencentVoice)
register("twilio", TwilioMessages)
register("webhook", Webhook)
register("smtp", SmtpEmail)
register("fcm", FcmPush)
register("apns", ApnsPush)
register("wechat", WechatSubscribe)
register("simulator", SimulatorAdapter)

__all__ = ["KINDS", "Adapter", "Message", "Outcome", "SendResult", "register"]
