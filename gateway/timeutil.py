"""Time helpers: epoch seconds inside, RFC 3339 outside."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime

Clock = Callable[[], float]


def system_clock() -> float:
    """Seconds since the epoch."""
    return time.time()


def rfc3339(epoch: float | str | None) -> str | None:
    """Epoch seconds as an RFC 3339 UTC time with offset, or None."""
    if epoch in (None, ""):
        return None
    return datetime.fromtimestamp(float(epoch), UTC).isoformat(timespec="milliseconds")
