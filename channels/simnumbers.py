"""How the provider simulator reads the addresses it is given, and the numbers it treats as switched off.

An address is read the way the API reads a recipient (``channels/addresses.py``, the same
functions): a phone number in any written form is its E.164 number, an email is matched without
regard to case, anything else (a push token) is taken as it is. So ``GET /messages?to=138-1234-5678``
finds what the gateway sent to ``+8613812345678``, and a switched-off number is switched off
however a send writes it. README.md ("The provider simulator") lists the built-in numbers.
"""

from __future__ import annotations

from channels.addresses import InvalidAddress, address_key

# +86 139 0000 0000 to +86 139 0000 0999: sends are taken, their receipts say undelivered.
UNDELIVERED_PREFIX = "+8613900000"
UNDELIVERED_CODE = "MK:0001"
# WeChat openids that start so answer 43101 (the member refused the template, or its grant is used up).
REFUSING_OPENID_PREFIX = "oRefuse"  # the carrier's code for a phone that is off or out of service
DELIVERED_CODE = "DELIVERED"
# Calls: answered, or (a switched-off number) not answered.
ANSWERED_CODE = "ANSWERED"
NOT_ANSWERED_CODE = "NO_ANSWER"


def lookup_key(raw: str, default_region: str = "CN") -> str:
    """The key a ``to`` asked for is matched by (``address_key``, emails without regard to case);
    InvalidAddress for a number or email that is not one."""
    key = address_key(raw, default_region)
    return key.casefold() if "@" in key else key


def key_of(to: str, default_region: str = "CN") -> str:
    """The key a received message is filed under: its lookup key, or what was sent if it reads as none."""
    try:
        return lookup_key(to, default_region)
    except InvalidAddress:
        return to


def receipt_for(
    key: str, undelivered_prefix: str = UNDELIVERED_PREFIX, channel: str = "sms"
) -> tuple[str, str]:
    """The receipt status and code the simulator posts for a message filed under this key (a call's:
    answered, or not answered on a switched-off number)."""
    off = key.startswith(undelivered_prefix)
    if channel == "voice":
        return ("undelivered", NOT_ANSWERED_CODE) if off else ("delivered", ANSWERED_CODE)
    if off:
        return "undelivered", UNDELIVERED_CODE
    return "delivered", DELIVERED_CODE
