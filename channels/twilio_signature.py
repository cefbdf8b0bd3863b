"""Twilio's webhook signature: base64 HMAC-SHA1 of the URL followed by the sorted POST parameters."""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping


def twilio_signature(auth_token: str, url: str, params: Mapping[str, str]) -> str:
    """The X-Twilio-Signature value Twilio sends for a form POST to url with params."""
    payload = url + "".join(f"{key}{params[key]}" for key in sorted(params))
    digest = hmac.new(auth_token.encode(), payload.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def verify_twilio(auth_token: str, url: str, params: Mapping[str, str], header: str | None) -> bool:
    """Constant-time check of X-Twilio-Signature."""
    if not header:
        return False
    return hmac.compare_digest(twilio_signature(auth_token, url, params), header.strip())
