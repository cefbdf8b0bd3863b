"""RFC 3339 formatting: the fast path writes what datetime.isoformat would."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import pytest

from gateway.timeutil import rfc3339


def reference(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="milliseconds")


@pytest.mark.parametrize(
    "t",
    [
        0.0,
        1_764_000_000.0,
        1_764_000_000.9995,
        1_764_000_000.9999996,  # rounds up to the next second
        1_764_000_000.0004999,
        1_764_000_059.999,
        1_767_225_599.9999999,  # the last instant of 2025 rounds into 2026
    ],
)
def test_edges(t: float) -> None:
    assert rfc3339(t) == reference(t)


def test_many_random_times_match_datetime() -> None:
    rng = random.Random(7)
    for _ in range(50_000):
        t = rng.uniform(1.6e9, 2.2e9)
        if rng.random() < 0.3:
            t = round(t, 3)
        assert rfc3339(t) == reference(t), repr(t)


def test_strings_and_empties() -> None:
    assert rfc3339("1764000000.25") == "2025-11-24T16:00:00.250+00:00"
    assert rfc3339(None) is None
    assert rfc3339("") is None


def test_the_same_time_asked_again_and_a_time_between_give_their_own_text() -> None:
    # The per-second cache of the date and time must not leak one time's milliseconds into another.
    t, u = 1_764_000_000.25, 1_764_000_001.5
    assert rfc3339(t) == rfc3339(t) == reference(t)
    assert rfc3339(u) == reference(u) and rfc3339(t) == reference(t)
    assert rfc3339(str(t)) == reference(t) and rfc3339(1_764_000_000) == reference(1_764_000_000)
