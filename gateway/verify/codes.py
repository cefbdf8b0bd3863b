"""Making, hashing and sealing one-time codes.

A code is drawn from the OS's CSPRNG (``secrets``). What Redis keeps is never the code:
- to check it, a keyed hash (HMAC-SHA256 under a key derived from the gateway's HMAC key, over the
  tenant, the verification id and the code), compared in constant time;
- to send it, the message is stored with a placeholder (``●●●●●●``) where the code goes, and the code
  itself only sealed (AES-256-GCM under a second derived key) in the notification's ``sealed`` field.
  The worker opens it at the moment of sending and fills it in; the outcome script deletes the field
  once the send is over (sent, failed or given up), so after sending the stored text holds only
  the placeholder.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
from collections.abc import Mapping
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

PLACEHOLDER = "●"  # one per digit: what the stored message shows where its code goes
_VERSION = "v1."


def new_code(length: int) -> str:
    """``length`` decimal digits, uniformly random (leading zeros kept)."""
    return f"{secrets.randbelow(10**length):0{length}d}"


def placeholder(length: int) -> str:
    """The stand-in a stored message holds for a code of ``length`` digits."""
    return PLACEHOLDER * length


class Codes:
    """Keyed hashes and sealing, under keys derived from the gateway's HMAC key."""

    def __init__(self, hmac_key: str) -> None:
        root = hmac_key.encode()
        self._mac_key = hmac.new(root, b"tidings verification hash", hashlib.sha256).digest()
        self._aead = AESGCM(hmac.new(root, b"tidings verification seal", hashlib.sha256).digest())

    def digest(self, tenant: str, ver_id: str, code: str) -> str:
        """The keyed hash Redis keeps of a code."""
        msg = f"{tenant}\x1f{ver_id}\x1f{code}".encode()
        return hmac.new(self._mac_key, msg, hashlib.sha256).hexdigest()

    def matches(self, stored: str, tenant: str, ver_id: str, code: str) -> bool:
        """Whether ``code`` is the one ``stored`` was made from, compared in constant time."""
        return hmac.compare_digest(stored.encode(), self.digest(tenant, ver_id, code).encode())

    def seal(self, tenant: str, code: str) -> str:
        """The code encrypted and authenticated (bound to the tenant), as text."""
        nonce = os.urandom(12)
        sealed = self._aead.encrypt(nonce, code.encode(), tenant.encode())
        return _VERSION + base64.urlsafe_b64encode(nonce + sealed).decode().rstrip("=")

    def unseal(self, tenant: str, sealed: str) -> str | None:
        """The code, or None when ``sealed`` is not one this key sealed for the tenant."""
        if not sealed.startswith(_VERSION):
            return None
        raw = sealed[len(_VERSION) :]
        try:
            blob = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4))
            return self._aead.decrypt(blob[:12], blob[12:], tenant.encode()).decode()
        except (InvalidTag, ValueError):
            return None


def reveal(
    rendered: Mapping[str, Any], params: Mapping[str, Any], code: str, spoken: bool = False
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The message fields and params with the code where its placeholder stands (for the send only);
    ``spoken``: digit by digit (``4 8 2 9 1 3``), so text-to-speech does not read a number."""
    mark = placeholder(len(code))
    if spoken:
        code = " ".join(code)

    def fill(value: Any) -> Any:
        return value.replace(mark, code) if isinstance(value, str) else value

    return {k: fill(v) for k, v in rendered.items()}, {k: fill(v) for k, v in params.items()}
