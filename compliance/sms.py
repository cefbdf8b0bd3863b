"""SMS length rules: encoding (GSM-7 or UCS-2) and segment count."""

from __future__ import annotations

from typing import Literal

Encoding = Literal["GSM-7", "UCS-2"]

_GSM_BASIC = (
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
_GSM_EXTENDED = "^{}\\[~]|€\f"
_GSM_BASIC_SET = frozenset(_GSM_BASIC)
_GSM_EXT_SET = frozenset(_GSM_EXTENDED)


def encoding_of(text: str) -> Encoding:
    """GSM-7 when every character is in the GSM 03.38 alphabet, else UCS-2."""
    for ch in text:
        if ch not in _GSM_BASIC_SET and ch not in _GSM_EXT_SET:
            return "UCS-2"
    return "GSM-7"


def length_units(text: str, encoding: Encoding) -> int:
    """Length in the units the carrier counts (septets for GSM-7, UTF-16 code units for UCS-2)."""
    if encoding == "GSM-7":
        return sum(2 if ch in _GSM_EXT_SET else 1 for ch in text)
    return len(text.encode("utf-16-le")) // 2


def segments(text: str) -> tuple[Encoding, int]:
    """Encoding and number of segments: 70/67 for UCS-2, 160/153 for GSM-7."""
    enc = encoding_of(text)
    units = length_units(text, enc)
    single, multi = (160, 153) if enc == "GSM-7" else (70, 67)
    if units <= single:
        return enc, 1
    return enc, -(-units // multi)
