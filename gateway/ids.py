"""Opaque, time-ordered ids with a type prefix (``ntf_01JD...``)."""

from __future__ import annotations

import base64
import os
import time

# RFC 4648 base32 alphabet -> Crockford's (no I, L, O, U), so ids sort like ULIDs.
_TO_CROCKFORD = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", "0123456789ABCDEFGHJKMNPQRSTVWXYZ")


def new_id(prefix: str) -> str:
    """A ULID-shaped id: 48 bits of milliseconds then 80 random bits, 26 characters after the prefix."""
    value = int(time.time() * 1000) << 80 | int.from_bytes(os.urandom(10), "big")
    # 160 bits = [2 zero bits][128-bit value][30 zero bits]: the first 26 base32 characters are the ULID.
    encoded = base64.b32encode((value << 30).to_bytes(20, "big")).decode("ascii")[:26]
    return f"{prefix}_{encoded.translate(_TO_CROCKFORD)}"
