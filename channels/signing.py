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


def sign_timestamped(secret: str, body: bytes, timestamp: int) -> str:
    """``t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>." + body>``: a replayed old request is refused."""
    mac = hmac.new(secret.encode(), str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def verify_timestamped(
    secret: str, body: bytes, header: str | None, now: float, tolerance: float = 300
) -> bool:
    """Check a ``t=...,v1=...`` signature and that it is recent."""
    if not header:
        return False
    parts = dict(p.split("=", 1) for p in header.split(",") if "=" in p)
    try:
        timestamp = int(parts.get("t", ""))
    except ValueError:
        return False
    if abs(now - timestamp) > tolerance:
        return False
    expected = sign_timestamped(secret, body, timestamp).split("v1=", 1)[1]
    return hmac.compare_digest(expected, parts.get("v1", ""))
