"""Alibaba Cloud RPC request signature (SignatureMethod HMAC-SHA1, SignatureVersion 1.0).

StringToSign = METHOD + "&" + pct("/") + "&" + pct(canonical query), where the canonical query is
every parameter but Signature, sorted by name, each name and value percent-encoded the RFC 3986
way (only A-Z a-z 0-9 - _ . ~ left as they are, space as %20); the key is AccessKeySecret + "&";
the signature is the Base64 of the HMAC-SHA1.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping
from urllib.parse import quote


def pct(value: str) -> str:
    """Alibaba's percent-encoding (RFC 3986 unreserved characters kept)."""
    return quote(value, safe="-_.~")


def canonical_query(params: Mapping[str, str]) -> str:
    """Sorted, encoded ``name=value`` pairs joined by ``&`` (Signature excluded)."""
    return "&".join(f"{pct(k)}={pct(v)}" for k, v in sorted(params.items()) if k != "Signature")


def string_to_sign(method: str, params: Mapping[str, str]) -> str:
    """What gets signed."""
    return f"{method.upper()}&{pct('/')}&{pct(canonical_query(params))}"


def rpc_signature(secret: str, method: str, params: Mapping[str, str]) -> str:
    """The ``Signature`` parameter's value (before URL encoding)."""
    digest = hmac.new(f"{secret}&".encode(), string_to_sign(method, params).encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()
