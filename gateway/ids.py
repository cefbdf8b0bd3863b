"""Opaque, time-ordered ids with a type prefix (``ntf_01JD...``)."""

from __future__ import annotations

import os
import threading
import time

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
# Every 10-bit value as its two Crockford characters: 13 lookups make a 26-character ULID.
_PAIRS = [a + b for a in _CROCKFORD for b in _CROCKFORD]
# Random bytes come from the OS a page at a time: one system call per 409 ids, not one per id.
# The lock hands each 10 bytes to one caller (workers make ids on several threads).
_POOL_BYTES = 4090
_pool = b""
_used = 0  # how many of the pool's bytes are handed out
_lock = threading.Lock()


def _forget_pool() -> None:
    # A forked child (an rq work horse) must not make the ids its parent is about to make, nor
    # inherit a lock another thread of the parent held.
    global _lock, _pool, _used
    _lock, _pool, _used = threading.Lock(), b"", 0


os.register_at_fork(after_in_child=_forget_pool)


BUCKETS = 1024  # a tenant's bucket space (docs/cluster.md "Buckets")


def new_id(prefix: str, bucket: int | None = None) -> str:
    """A ULID-shaped id: 48 bits of milliseconds then 80 random bits, 26 characters after the prefix.

    With a ``bucket`` (0 to 1023, the member's: ``keys.member_bucket``), the last 10 of the random
    bits are the bucket, so a key built from the id alone can find its member's slot (``bucket_of``).
    """
    if bucket is not None and not 0 <= bucket < BUCKETS:
        raise ValueError(f"bucket {bucket} is not in 0..{BUCKETS - 1}")
    global _pool, _used
    with _lock:
        if _used + 10 > len(_pool):
            _pool, _used = os.urandom(_POOL_BYTES), 0
        pool, used = _pool, _used
        _used = used + 10
    r = int.from_bytes(pool[used : used + 10], "big")
    if bucket is not None:
        r = r >> 10 << 10 | bucket
    ms = time.time_ns() // 1_000_000
    p = _PAIRS  # 130 bits: two zeros and the 48 of the time (5 pairs), then the 80 random (8 pairs)
    return (
        f"{prefix}_{p[ms >> 40]}{p[(ms >> 30) & 1023]}{p[(ms >> 20) & 1023]}{p[(ms >> 10) & 1023]}"
        f"{p[ms & 1023]}{p[r >> 70]}{p[(r >> 60) & 1023]}{p[(r >> 50) & 1023]}{p[(r >> 40) & 1023]}"
        f"{p[(r >> 30) & 1023]}{p[(r >> 20) & 1023]}{p[(r >> 10) & 1023]}{p[r & 1023]}"
    )


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


def bucket_of(value: str) -> int:
    """The bucket a ``new_id(prefix, bucket)`` was made in (its last two characters); 0 if not an id."""
    body = value.rpartition("_")[2]
    if len(body) != 26:
        return 0
    high, low = _CROCKFORD.find(body[24]), _CROCKFORD.find(body[25])
    return 0 if high < 0 or low < 0 else high * 32 + low
