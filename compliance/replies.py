"""Member replies (MO): is this an opt-out, a request to re-subscribe, or just chatter?

Members type TD, td, ＴＤ, 退订谢谢, T, R, STOP, with stray spaces and
punctuation and trailing words. A reply is an opt-out when it starts with an
unsubscribe keyword (an ASCII keyword must not run on into more letters:
"TD 不要再发" is one, "Thanks" is not), or names 退订 / 拒收 / 取消订阅
anywhere without a negation in front ("我要退订" is one, "不要退订" is not).
"""

from __future__ import annotations

import re
import unicodedata
from enum import StrEnum


class ReplyKind(StrEnum):
    """What a reply asks for."""

    OPT_OUT = "opt_out"
    RESUBSCRIBE = "resubscribe"
    OTHER = "other"


ASCII_KEYWORDS = ("UNSUBSCRIBE", "STOP", "TD", "T", "R", "N")
CARRIER_CODES = ("00000", "0000")
CHINESE_OPT_OUT = ("退订", "拒收", "取消订阅", "退定")
NEGATIONS = ("不", "别", "勿", "没", "無", "无")
RESUBSCRIBE = ("START", "UNSTOP", "订阅", "恢复订阅", "重新订阅")

_LEADING = re.compile(r"^[\s\W_]+", re.UNICODE)
_ZERO_WIDTH = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u2060\ufeff"))


def normalize(text: str) -> str:
    """Full-width to half-width, upper case, zero-width characters and leading punctuation gone."""
    folded = unicodedata.normalize("NFKC", text).translate(_ZERO_WIDTH).upper().strip()
    return _LEADING.sub("", folded)


def classify(text: str) -> ReplyKind:
    """The reply's meaning; anything ambiguous is OTHER (never an accidental re-subscribe)."""
    t = normalize(text)
    if not t:
        return ReplyKind.OTHER
    for code in CARRIER_CODES:
        if t.startswith(code) and not t[len(code) : len(code) + 1].isdigit():
            return ReplyKind.OPT_OUT
    for word in ASCII_KEYWORDS:
        if t.startswith(word):
            rest = t[len(word) :]
            if not rest or not (rest[0].isascii() and rest[0].isalnum()):
                return ReplyKind.OPT_OUT
    compact = re.sub(r"[\s\W_]+", "", t)  # "退 订" is still 退订
    for word in CHINESE_OPT_OUT:
        start = compact.find(word)
        while start != -1:
            before = compact[max(0, start - 2) : start]
            if not any(n in before for n in NEGATIONS):
                return ReplyKind.OPT_OUT
            start = compact.find(word, start + 1)
    if compact in RESUBSCRIBE:
        return ReplyKind.RESUBSCRIBE
    return ReplyKind.OTHER
