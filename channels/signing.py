"""HMAC signatures shared by the simulator and the gateway's webhooks."""

from __future__ import annotations

import hashlib
import hmac

SIGNATURE_HEADER = "x-tidings-signature"


def sign(secret: str, body: bytes) -> str:
    """Hex HMAC-SHA256 of the body."""
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify(secret: str, body: bytes, signature: str | None) -> bool:
    """Constant-time check of a signature."""
    if not signature:
        return False
    return hmac.compare_digest(sign(secret, body), signature.strip().lower())
