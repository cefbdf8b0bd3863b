from __future__ import annotations

import pytest

from compliance.sms import encoding_of, segments


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("积" * 70, ("UCS-2", 1)),
        ("积" * 71, ("UCS-2", 2)),
        ("积" * 134, ("UCS-2", 2)),
        ("积" * 135, ("UCS-2", 3)),
        ("a" * 160, ("GSM-7", 1)),
        ("a" * 161, ("GSM-7", 2)),
        ("a" * 306, ("GSM-7", 2)),
        ("a" * 307, ("GSM-7", 3)),
        ("{" * 80, ("GSM-7", 1)),  # extension characters count twice
        ("{" * 81, ("GSM-7", 2)),
        ("【星耀商城】" + "a" * 60, ("UCS-2", 1)),  # the signature makes it UCS-2 and counts
    ],
)
def test_segments(text: str, expected: tuple[str, int]) -> None:
    assert segments(text) == expected


def test_emoji_counts_two_units() -> None:
    assert encoding_of("🎁") == "UCS-2"
    assert segments("🎁" * 35) == ("UCS-2", 1)
    assert segments("🎁" * 36) == ("UCS-2", 2)
