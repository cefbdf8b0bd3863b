"""One-click email unsubscribe (RFC 8058): signed, expiring links (the endpoint is unsubscribe_api).

Marketing email carries ``List-Unsubscribe: <https://…/v1/unsubscribe/TOKEN>`` and
``List-Unsubscribe-Post: List-Unsubscribe=One-Click``. The mail client POSTs
``List-Unsubscribe=One-Click`` to the link: that opts the address out of the brand's email. A GET
(a person clicking, or a scanner prefetching the link) only shows a page with a button: it never
changes anything by itself.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time

import msgspec

from gateway.errors import BadRequest, Forbidden

LIFETIME_SECONDS = 90 * 86_400


class Link(msgspec.Struct, frozen=True):
    """What a token names: who opts out of which brand's email, until when the link works."""

    t: str  # tenant
    a: str  # email address
    b: str  # brand ("" = every brand)
    x: int  # expiry, epoch seconds


def _key(hmac_key: str) -> bytes:
    # A key of its own, derived: a link can never be replayed as another HMAC of the gateway.
    return hmac.new(hmac_key.encode(), b"tidings-unsubscribe-v1", hashlib.sha256).digest()


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def make_token(hmac_key: str, tenant: str, address: str, brand: str | None, now: float | None = None) -> str:
    """A signed link token that expires after LIFETIME_SECONDS."""
    expiry = int((time.time() if now is None else now) + LIFETIME_SECONDS)
    body = _b64(msgspec.json.encode(Link(tenant, address, brand or "", expiry)))
    sig = _b64(hmac.new(_key(hmac_key), body.encode(), hashlib.sha256).digest())
    return f"{body}.{sig}"


def read_token(hmac_key: str, token: str, now: float | None = None) -> Link:
    """The link a token names; Forbidden when forged, BadRequest when malformed or expired."""
    body, _, sig = token.partition(".")
    expected = _b64(hmac.new(_key(hmac_key), body.encode(), hashlib.sha256).digest())
    # Bytes: a forged token may hold any character, and compare_digest refuses non-ASCII str.
    if not sig or not hmac.compare_digest(sig.encode(), expected.encode()):
        raise Forbidden("invalid_unsubscribe_link", "this unsubscribe link is not one we issued")
    try:
        link = msgspec.json.decode(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)), type=Link)
    except (ValueError, msgspec.DecodeError):
        raise BadRequest("invalid_unsubscribe_link", "this unsubscribe link is malformed") from None
    if link.x < (time.time() if now is None else now):
        raise BadRequest("unsubscribe_link_expired", "this unsubscribe link has expired")
    return link
