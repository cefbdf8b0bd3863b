"""Opaque, time-ordered ids with a type prefix (``ntf_01JD...``)."""

from __future__ import annotations

import os
import time

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
# Every 10-bit value as its two Crockford characters: 13 lookups make a 26-character ULID.
_PAIRS = [a + b for a in _CROCKFORD for b in _CROCKFORD]


def new_id(prefix: str) -> str:
    """A ULID-shaped id: 48 bits of milliseconds then 80 random bits, 26 characters after the prefix."""
    value = time.time_ns() // 1_000_000 << 80 | int.from_bytes(os.urandom(10), "big")
    pairs = _PAIRS
    return prefix + "_" + "".join([pairs[(value >> shift) & 1023] for shift in range(120, -1, -10)])


def id_time(value: str) -> float:
    """The epoch seconds (real time, to the millisecond) a ``new_id`` was made at; 0.0 if not one."""
    body = value.rpartition("_")[2]
    if len(body) != 26:
        return 0.0
    ms = 0
    for ch in body[:10]:
        digit = _CROCKFORD.find(ch)
        if digit < 0:
            return 0.0
        ms = ms * 32 + digit
    return ms / 1000  # the first 10 characters hold bits 129 to 80: two zeros, then the 48 of the time
