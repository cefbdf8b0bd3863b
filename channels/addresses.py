"""A member's address in the one written form the gateway keys, dedups and sends by.

A phone number in any form ``phonenumbers`` reads (``138-1234-5678``, ``+86 138 1234 5678``,
``(+86)…``, ``0086…``) becomes E.164; an email keeps its local part and gets a lower-case domain.
The gateway checks every recipient with these (``gateway/recipients.py`` turns InvalidAddress into
its InvalidRecipient), and the provider simulator matches ``GET /messages?to=`` with them, so the
two read a number the same way. Pure functions: no I/O, nothing of the gateway.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

import phonenumbers
from phonenumbers import PhoneNumberType
from phonenumbers import timezone as pn_timezone


class InvalidAddress(ValueError):
    """Not a phone number, or not an email address; the message says why."""


_MOBILE_TYPES = frozenset({PhoneNumberType.MOBILE, PhoneNumberType.FIXED_LINE_OR_MOBILE})
_PHONE_CHARS = re.compile(r"^[0-9 ()+\-.]{3,40}$")
_EMAIL = re.compile(
    r"^[^@\s<>(),;:\"\[\]]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9-]{1,63})+$"
)


class Phone:
    """A parsed phone number."""

    __slots__ = ("e164", "mobile", "region", "timezone")

    def __init__(self, e164: str, mobile: bool, region: str | None, timezone: str | None) -> None:
        self.e164 = e164
        self.mobile = mobile
        self.region = region
        self.timezone = timezone


def _cn_mobile_pattern() -> re.Pattern[str]:
    meta = phonenumbers.PhoneMetadata.metadata_for_region("CN")
    pattern = meta.mobile.national_number_pattern if meta is not None and meta.mobile is not None else None
    if not pattern:
        raise RuntimeError("phonenumbers has no CN mobile pattern")
    return re.compile(str(pattern))


_CN_MOBILE = _cn_mobile_pattern()
_SEPARATORS = str.maketrans("", "", " -().")


def _fast_cn_mobile(raw: str, default_region: str) -> Phone | None:
    """The common case, a Chinese mobile number, checked against phonenumbers' own CN mobile pattern.

    A full ``phonenumbers.parse`` costs about 100 us; this costs about 2 us. Anything else takes the full path.
    """
    digits = raw.translate(_SEPARATORS)
    if digits.startswith("+86"):
        nsn = digits[3:]
    elif digits.startswith("0086"):
        nsn = digits[4:]
    elif default_region == "CN":
        nsn = digits
    else:
        return None
    if len(nsn) != 11 or not nsn.isdigit() or not _CN_MOBILE.fullmatch(nsn):
        return None
    return Phone(f"+86{nsn}", True, "CN", "Asia/Shanghai")


@lru_cache(maxsize=65_536)
def parse_phone(raw: str, default_region: str = "CN") -> Phone:
    """Parse any form ``phonenumbers`` understands into E.164; raise InvalidAddress if not a real number."""
    fast = _fast_cn_mobile(raw, default_region) if _PHONE_CHARS.match(raw) else None
    if fast is not None:
        return fast
    if not _PHONE_CHARS.match(raw):
        # phonenumbers reads keypad letters (1-800-FLOWERS); a member's number never has them.
        raise InvalidAddress("a phone number holds digits, spaces, +, -, (, ) and . only")
    return _full_parse(raw, default_region)


def _full_parse(raw: str, default_region: str) -> Phone:
    try:
        num = phonenumbers.parse(raw, default_region)
    except phonenumbers.NumberParseException as exc:
        raise InvalidAddress(f"not a phone number: {exc}") from None
    if not phonenumbers.is_valid_number(num):
        raise InvalidAddress("not a valid phone number")
    e164 = phonenumbers.format_number(num, phonenumbers.PhoneNumberFormat.E164)
    mobile = phonenumbers.number_type(num) in _MOBILE_TYPES
    zones = [z for z in pn_timezone.time_zones_for_number(num) if z != "Etc/Unknown"]
    region = phonenumbers.region_code_for_number(num)
    return Phone(e164, mobile, region, zones[0] if zones else None)


def check_email(address: str) -> str:
    """Return a normalized email address or raise InvalidAddress."""
    candidate = address.strip()
    if not _EMAIL.match(candidate):
        raise InvalidAddress("not a valid email address")
    local, _, domain = candidate.partition("@")
    return f"{local}@{domain.lower()}"


# What a written phone number holds besides digits. Read after NFKC, so a number typed in full-width
# characters (an input method's full-width mode) counts as a number and is parsed, not taken as a token.
_PHONE_MARKS = frozenset(" +-().")


def _looks_like_phone(text: str) -> bool:
    folded = unicodedata.normalize("NFKC", text)
    return any(c.isdecimal() for c in folded) and all(c.isdecimal() or c in _PHONE_MARKS for c in folded)


def address_key(raw: str, default_region: str = "CN") -> str:
    """Any address a caller may name, in the one form it is keyed by: a phone number (only digits, of
    any width, and `` +-().``) as E.164, an email as ``check_email`` writes it, anything else (a
    push token) as it is. InvalidAddress for an empty text and for a number or email that is not
    one (a form the API would refuse to send to is refused here with the API's reason)."""
    text = raw.strip()
    if not text:
        raise InvalidAddress("the address is empty")
    if "@" in text:
        return check_email(text)
    if _looks_like_phone(text):
        try:
            return parse_phone(text, default_region).e164
        except InvalidAddress as exc:
            if unicodedata.normalize("NFKC", text) != text:
                raise InvalidAddress(f"{exc} (full-width characters: the API refuses them too)") from None
            raise
    return text  # a push token
