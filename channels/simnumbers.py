"""How the provider simulator reads the addresses it is given, and the numbers it treats as switched off.

An address is read the way the API reads a recipient (``channels/addresses.py``, the same
functions): a phone number in any written form is its E.164 number, an email is matched without
regard to case, anything else (a push token) is taken as it is. So ``GET /messages?to=138-1234-5678``
finds what the gateway sent to ``+8613812345678``, and a switched-off number is switched off
however a send writes it. README.md ("The provider simulator") lists the built-in numbers.
"""

from __future__ import annotations

import unicodedata

from channels.addresses import InvalidAddress, check_email, parse_phone

# +86 139 0000 0000 to +86 139 0000 0999: sends are taken, their receipts say undelivered.
UNDELIVERED_PREFIX = "+8613900000"
UNDELIVERED_CODE = "MK:0001"  # the carrier's code for a phone that is off or out of service
DELIVERED_CODE = "DELIVERED"

# What a written phone number holds besides digits. Read after NFKC, so a number typed in full-width
# characters (an input method's full-width mode) counts as a number and is parsed, not taken as a token.
_PHONE_MARKS = frozenset(" +-().")


def _looks_like_phone(text: str) -> bool:
    folded = unicodedata.normalize("NFKC", text)
    return any(c.isdecimal() for c in folded) and all(c.isdecimal() or c in _PHONE_MARKS for c in folded)


def lookup_key(raw: str, default_region: str = "CN") -> str:
    """The key a ``to`` asked for is matched by; InvalidAddress for a number or email that is not one.

    What holds only digits (of any width) and `` +-().`` is a phone number, parsed by the API's own
    parser: a form the API would refuse (too short, too long, full-width digits) is answered with
    the API's reason instead of an empty list. Anything else without an ``@`` is a push token.
    """
    text = raw.strip()
    if not text:
        raise InvalidAddress("the address is empty")
    if "@" in text:
        return check_email(text).casefold()
    if _looks_like_phone(text):
        try:
            return parse_phone(text, default_region).e164
        except InvalidAddress as exc:
            if unicodedata.normalize("NFKC", text) != text:
                raise InvalidAddress(f"{exc} (full-width characters: the API refuses them too)") from None
            raise
    return text  # a push token


def key_of(to: str, default_region: str = "CN") -> str:
    """The key a received message is filed under: its lookup key, or what was sent if it reads as none."""
    try:
        return lookup_key(to, default_region)
    except InvalidAddress:
        return to


def receipt_for(key: str, undelivered_prefix: str = UNDELIVERED_PREFIX) -> tuple[str, str]:
    """The receipt status and code the simulator posts for a message filed under this key."""
    if key.startswith(undelivered_prefix):
        return "undelivered", UNDELIVERED_CODE
    return "delivered", DELIVERED_CODE
