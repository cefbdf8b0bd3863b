"""Time helpers: epoch seconds inside, RFC 3339 outside."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime

Clock = Callable[[], float]


_OFFSET = [0.0]


def system_clock() -> float:
    """Seconds since the epoch, as every component of the gateway sees them."""
    return time.time() + _OFFSET[0]


def set_clock(epoch: float | None) -> None:
    """Make this process's gateway clock read ``epoch`` now (None: the real time). For tests only.

    Everything that decides by time (accept, quiet hours, caps, claims, leases) reads system_clock();
    rq's scheduler keeps real time, so times handed to it are converted back (to_real).
    """
    _OFFSET[0] = 0.0 if epoch is None else epoch - time.time()


def to_real(epoch: float) -> float:
    """A gateway-clock time as real time (for rq's scheduler)."""
    return epoch - _OFFSET[0]


def rfc3339(epoch: float | str | None) -> str | None:
    """Epoch seconds as an RFC 3339 UTC time with offset, or None."""
    if epoch in (None, ""):
        return None
    return datetime.fromtimestamp(float(epoch), UTC).isoformat(timespec="milliseconds")
