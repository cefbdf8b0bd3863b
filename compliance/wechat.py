"""WeChat subscribe-message values checked before the provider sees them (a 422, not a late 47003).

Each ``data`` key names its type by its prefix (``thing1``, ``character_string2``); WeChat's
documentation of subscribeMessage.send ("订阅消息参数值内容限制说明") gives each type's limits, which
are encoded here. A key whose prefix is not listed (``enum``, a type added later) is passed on.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from compliance.reasons import Reason, ReasonEntry, reason

_HAN = r"\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
# "Symbols" are the common ones besides Chinese, letters and digits; never a line break or control.
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_TIME = r"\d{1,2}:\d{2}(?::\d{2})?"
_DATE = r"(?:\d{4}年\d{1,2}月(?:\d{1,2}日)?|\d{1,2}月\d{1,2}日|\d{4}[-/.]\d{1,2}(?:[-/.]\d{1,2})?|\d{1,2}[-/.]\d{1,2})"


def _span(one: str) -> re.Pattern[str]:
    """One value, or a range of two joined by ``~``."""
    return re.compile(rf"{one}(?:\s*~\s*{one})?")


@dataclass(frozen=True)
class Kind:
    """One data type: its limit in characters and the form its value must have."""

    what: str  # for the reason's detail
    max_chars: int | None
    form: re.Pattern[str] | None = None
    also: Callable[[str], str | None] | None = None  # a further check: a problem, or None


def _name(value: str) -> str | None:
    """Chinese (or mixed) names: 10 characters; names without Chinese: 20."""
    if re.search(f"[{_HAN}]", value):
        return None if len(value) <= 10 else "a name with Chinese characters holds at most 10"
    return None if len(value) <= 20 else "a name without Chinese characters holds at most 20"


KINDS: Mapping[str, Kind] = {
    "thing": Kind("Chinese characters, letters, digits or symbols", 20),
    "number": Kind("digits, with a decimal part allowed", 32, re.compile(r"[+-]?\d+(?:\.\d+)?")),
    "letter": Kind("letters only", 32, re.compile(r"[A-Za-z]+")),
    "symbol": Kind("symbols only", 5, re.compile(rf"[^\sA-Za-z0-9{_HAN}]+")),
    "character_string": Kind("digits, letters or symbols", 32, re.compile(rf"[^\s{_HAN}]+")),
    "time": Kind(
        "a 24-hour time, a date before it allowed, or a range with ~", None, _span(rf"(?:{_DATE}\s*)?{_TIME}")
    ),
    "date": Kind(
        "a date, a time after it allowed, or a range with ~", None, _span(rf"{_DATE}(?:\s*{_TIME})?")
    ),
    "amount": Kind(
        "a currency sign and up to 10 digits, a decimal part and a closing 元 allowed",
        None,
        re.compile(r"[^\d\s]?\d{1,10}(?:\.\d+)?元?"),
    ),
    "phone_number": Kind("digits and symbols", 17, re.compile(r"[0-9+\-() ]+")),
    "car_number": Kind(
        "a plate: letters and digits, Chinese first or last allowed",
        8,
        re.compile(rf"[{_HAN}A-Za-z0-9][A-Za-z0-9]*[{_HAN}A-Za-z0-9]?"),
    ),
    "name": Kind("10 Chinese characters, or 20 letters or symbols", None, None, _name),
    "phrase": Kind("Chinese characters only", 5, re.compile(f"[{_HAN}]+")),
}

_KEY = re.compile(r"([a-z_]+?)(\d+)")


def kind_of(key: str) -> Kind | None:
    """The type a data key names by its prefix (``thing1`` -> thing), None when unknown."""
    m = _KEY.fullmatch(key)
    return KINDS.get(m.group(1)) if m else None


def check_data(data: Mapping[str, Any]) -> ReasonEntry | None:
    """The first value that breaks its type's limit, as a reason naming the field; None when all fit."""
    for key, item in data.items():
        value = item.get("value") if isinstance(item, Mapping) else None
        where = f"data.{key}.value"
        if not isinstance(value, str) or not value.strip():
            return reason(Reason.INVALID_CONTENT, f"{where} must be a non-empty string", field=where)
        if _CONTROL.search(value):
            return reason(
                Reason.INVALID_CONTENT, f"{where} holds a line break or control character", field=where
            )
        kind = kind_of(key)
        if kind is None:
            continue
        prefix = key.rstrip("0123456789")
        if kind.max_chars is not None and len(value) > kind.max_chars:
            return reason(
                Reason.CONTENT_TOO_LONG,
                f"{where} is {len(value)} characters; a {prefix} value holds at most {kind.max_chars}",
                field=where,
            )
        if kind.form is not None and not kind.form.fullmatch(value.strip()):
            return reason(Reason.INVALID_CONTENT, f"{where} must be {kind.what} ({prefix})", field=where)
        problem = kind.also(value) if kind.also is not None else None
        if problem is not None:
            return reason(Reason.CONTENT_TOO_LONG, f"{where}: {problem}", field=where)
    return None
