"""Tencent Cloud API 3.0 signature, TC3-HMAC-SHA256.

CanonicalRequest = METHOD \\n URI \\n QUERY \\n canonical headers \\n signed headers \\n hex(sha256(payload))
StringToSign = "TC3-HMAC-SHA256" \\n timestamp \\n date/service/tc3_request \\n hex(sha256(CanonicalRequest))
The key is derived: HMAC("TC3"+SecretKey, date) -> service -> "tc3_request"; the signature is the hex
HMAC-SHA256 of StringToSign with it. ``date`` is the UTC date of the timestamp.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime

ALGORITHM = "TC3-HMAC-SHA256"
SIGNED_HEADERS = "content-type;host"


def _hmac(key: bytes, msg: str) -> bytes:
    return hmac.new(key, msg.encode(), hashlib.sha256).digest()


def canonical_request(host: str, content_type: str, payload: bytes, method: str = "POST") -> str:
    """The canonical request of a POST to ``/`` with content-type and host signed."""
    headers = f"content-type:{content_type}\nhost:{host}\n"
    return f"{method}\n/\n\n{headers}\n{SIGNED_HEADERS}\n{hashlib.sha256(payload).hexdigest()}"


def credential_date(timestamp: int) -> str:
    """The UTC date of the request, as the credential scope names it."""
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d")


def signature(secret_key: str, service: str, timestamp: int, canonical: str) -> str:
    """The hex signature."""
    date = credential_date(timestamp)
    scope = f"{date}/{service}/tc3_request"
    to_sign = f"{ALGORITHM}\n{timestamp}\n{scope}\n{hashlib.sha256(canonical.encode()).hexdigest()}"
    key = _hmac(_hmac(_hmac(f"TC3{secret_key}".encode(), date), service), "tc3_request")
    return hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()


def authorization(
    secret_id: str,
    secret_key: str,
    service: str,
    host: str,
    content_type: str,
    payload: bytes,
    timestamp: int,
) -> str:
    """The ``Authorization`` header."""
    sig = signature(secret_key, service, timestamp, canonical_request(host, content_type, payload))
    scope = f"{credential_date(timestamp)}/{service}/tc3_request"
    return f"{ALGORITHM} Credential={secret_id}/{scope}, SignedHeaders={SIGNED_HEADERS}, Signature={sig}"
