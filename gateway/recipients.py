"""Recipient addresses: phone parsing to E.164, masking, time zones.

The parsing itself is ``channels/addresses.py`` (the provider simulator reads numbers with it
too); here it raises the gateway's InvalidRecipient.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers

from channels import addresses
from channels.addresses import InvalidAddress, Phone
from gateway.errors import InvalidRecipient


def parse_phone(raw: str, default_region: str = "CN") -> Phone:
    """Parse any form ``phonenumbers`` understands into E.164; raise InvalidRecipient if not a real number."""
    try:
        return addresses.parse_phone(raw, default_region)
    except InvalidAddress as exc:
        raise InvalidRecipient(str(exc)) from None


def check_email(address: str) -> str:
    """Return a normalized email address (the domain in lower case) or raise InvalidRecipient."""
    try:
        return addresses.check_email(address)
    except InvalidAddress as exc:
        raise InvalidRecipient(str(exc)) from None


def address_key(raw: str, default_region: str = "CN") -> str:
    """Any address a caller names (phone in any form, email, push token) in the form it is keyed by;
    InvalidRecipient for an empty text or a number or email that is not one."""
    try:
        return addresses.address_key(raw, default_region)
    except InvalidAddress as exc:
        raise InvalidRecipient(str(exc)) from None


def mask_phone(e164: str) -> str:
    """``+8613812345678`` -> ``+86138****5678``: country code, first three and last four digits."""
    if len(e164) == 14 and e164.startswith("+861"):  # the common case, without a parse
        return f"+86{e164[3:6]}****{e164[-4:]}"
    try:
        num = phonenumbers.parse(e164, None)
        cc = f"+{num.country_code}"
        national = str(num.national_number)
    except phonenumbers.NumberParseException:
        cc, national = "", e164.lstrip("+")
    if len(national) <= 7:
        return cc + national[:2] + "*" * max(len(national) - 4, 1) + national[-2:]
    return f"{cc}{national[:3]}{'*' * (len(national) - 7)}{national[-4:]}"


def mask_email(address: str) -> str:
    """``lina@example.com`` -> ``l***@example.com``."""
    local, _, domain = address.partition("@")
    return f"{local[:1]}***@{domain}"


def mask_token(token: str) -> str:
    """Push tokens are secrets of a device: show only the ends."""
    return f"{token[:4]}…{token[-4:]}" if len(token) > 12 else "****"


def mask_address(address: str, channel: str = "") -> str:
    """The one way an address is shown: a push token or WeChat openid by its ends, an email or phone
    number masked."""
    if channel in ("push", "wechat"):
        return mask_token(address)
    if "@" in address:
        return mask_email(address)
    return mask_phone(address)


# A Chinese mobile number (with or without +86 / 0086 and separators) or any other international number
# inside free text (a consent note, an SMS the member's own number was pasted into). Digit runs that are
# longer (provider ids) do not match.
_PHONE_IN_TEXT = re.compile(
    r"(?<![\d+])(?:(?:\+|00)86[ -]?)?1[3-9]\d[ -]?\d{4}[ -]?\d{4}(?!\d)|\+\d[\d -]{6,16}\d(?!\d)"
)
_EMAIL_IN_TEXT = re.compile(r"[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+")
# Runs of eleven or more digits, spaces and dashes (with the "+" that may come just before them): the
# only places a number can be. Finding them first is 25x cheaper than running the exact pattern (with
# its look-behind) over every position of the text, and a pattern that starts with the digit class
# (not with an optional "+") lets the regex engine skip ahead to the next digit, twice as fast again.
_CANDIDATE = re.compile(r"[0-9][0-9 -]{9,}[0-9]")
_SCRUB_SEPARATORS = str.maketrans("", "", " -+")


def _mask_digits(match: re.Match[str]) -> str:
    digits = match.group(0).translate(_SCRUB_SEPARATORS)
    if digits.startswith(("86", "0086")) and len(digits) in (13, 15):
        digits = digits[-11:]
    return f"{digits[:3]}****{digits[-4:]}"


def scrub(text: str) -> str:
    """Mask phone numbers and email addresses inside free text (the audit store never holds them)."""
    if "@" in text:
        text = _EMAIL_IN_TEXT.sub(lambda m: mask_email(m.group(0)), text)
    parts: list[str] = []
    done = 0
    for found in _CANDIDATE.finditer(text):
        start, end = found.span()
        if start > done and text[start - 1] == "+":
            start -= 1
        run = text[start:end]
        if run[0] != "+" and len(run.translate(_SCRUB_SEPARATORS)) < 11:
            continue  # a date or a short code: no mobile number has fewer than 11 digits
        masked = _PHONE_IN_TEXT.sub(_mask_digits, run)
        if masked != run:
            parts += (text[done:start], masked)
            done = end
    if not parts:
        return text
    parts.append(text[done:])
    return "".join(parts)


def check_timezone(name: str) -> str:
    """Return an IANA zone name or raise InvalidRecipient."""
    if not 0 < len(name) <= 64:
        raise InvalidRecipient("a time zone name has 1 to 64 characters")
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: names the file system refuses
        raise InvalidRecipient(f"unknown time zone {name!r}") from None
    return name


class Members:
    """A member's key in Redis and the audit log: a keyed hash of the address, never the address (PIPL)."""

    def __init__(self, key: str) -> None:
        # The keyed HMAC made once and copied per address: the stdlib's own, a third cheaper than hmac.new.
        self._mac = hmac.new(key.encode(), digestmod=hashlib.sha256)
        self.of = lru_cache(maxsize=65_536)(self._of)

    def _of(self, address: str) -> str:
        mac = self._mac.copy()
        mac.update(address.encode())
        return mac.hexdigest()[:32]
