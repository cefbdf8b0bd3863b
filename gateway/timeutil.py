"""Time helpers: epoch seconds inside, RFC 3339 outside."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from functools import lru_cache

Clock = Callable[[], float]


_OFFSET = [0.0]


def system_clock() -> float:
    """Seconds since the epoch, as every component of the gateway sees them."""
    return time.time() + _OFFSET[0]


async def pause(stop: threading.Event, seconds: float) -> bool:
    """Sleep ``seconds`` on the running loop, or less once ``stop`` is set (by another thread); whether
    it is set. The loops beside a worker wait this way so that a stop is noticed at once."""
    if stop.is_set():
        return True
    return await asyncio.get_running_loop().run_in_executor(None, stop.wait, seconds)


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
    """Epoch seconds as an RFC 3339 UTC time with milliseconds and offset, or None.

    The same text as ``datetime.fromtimestamp(t, UTC).isoformat(timespec="milliseconds")``
    (microseconds rounded half-even, then truncated to milliseconds), at half the cost: the
    date and time of day are formatted once per second.
    """
    if epoch is None or epoch == "":
        return None
    t = float(epoch)
    second = int(t // 1)
    micros = round((t - second) * 1e6)
    if micros >= 1_000_000:
        second, micros = second + 1, micros - 1_000_000
    return f"{_second(second)}.{micros // 1000:03d}+00:00"


@lru_cache(maxsize=16)
def _second(second: int) -> str:
    return datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S")
