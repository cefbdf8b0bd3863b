"""Time rules in the member's own time zone: quiet hours and the cap month."""

from __future__ import annotations

from datetime import datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

from compliance.policy import Rules


@lru_cache(maxsize=512)
def zone(name: str) -> ZoneInfo:
    """A cached ZoneInfo."""
    return ZoneInfo(name)


def quiet_release(when: float, tz: str, category: str, rules: Rules, channel: str = "sms") -> float | None:
    """If ``when`` falls in the member's quiet hours for this category and channel, the epoch time they
    end; else None. A call also keeps out of the policy's voice windows (``voice_quiet``): it is held to
    the end of whichever window it falls in, and of any window that end falls in."""
    windows = quiet_windows(category, rules, channel)
    if not windows:
        return None
    # Quiet hours start and end on whole minutes: every time in the same minute has the same answer.
    if len(windows) == 1:
        return _quiet_release_minute(int(when // 60), tz, *windows[0])
    release = None
    for _ in range(len(windows) + 1):  # each hop leaves one window; back-to-back windows chain
        hop = None
        for start, end in windows:
            hop = _quiet_release_minute(int((release or when) // 60), tz, start, end)
            if hop is not None:
                break
        if hop is None:
            break
        release = hop
    return release


def quiet_windows(category: str, rules: Rules, channel: str) -> tuple[tuple[int, int], ...]:
    """The (start, end) local windows that hold a message of this category on this channel."""
    windows: list[tuple[int, int]] = []
    if category in rules.quiet_categories and rules.quiet_start != rules.quiet_end:
        windows.append((rules.quiet_start, rules.quiet_end))
    if channel == "voice" and category in rules.voice_quiet_categories:
        windows += [w for w in rules.voice_quiet if w[0] != w[1]]
    return tuple(windows)


@lru_cache(maxsize=4096)
def _quiet_release_minute(minute_epoch: int, tz: str, start: int, end: int) -> float | None:
    local = datetime.fromtimestamp(minute_epoch * 60, zone(tz))
    minute = local.hour * 60 + local.minute
    inside = (minute >= start or minute < end) if start > end else (start <= minute < end)
    if not inside:
        return None
    release_day = local.date()
    if start > end and minute >= start:
        release_day += timedelta(days=1)
    release = datetime(
        release_day.year, release_day.month, release_day.day, end // 60, end % 60, tzinfo=zone(tz)
    )
    return release.timestamp()


def cap_month(when: float, tz: str) -> tuple[str, float]:
    """The member's calendar month at ``when`` ("2026-12") and the epoch time it ends."""
    return _cap_month_minute(int(when // 60), tz)


@lru_cache(maxsize=4096)
def _cap_month_minute(minute_epoch: int, tz: str) -> tuple[str, float]:
    local = datetime.fromtimestamp(minute_epoch * 60, zone(tz))
    year, month = (local.year + 1, 1) if local.month == 12 else (local.year, local.month + 1)
    return f"{local.year:04d}-{local.month:02d}", datetime(year, month, 1, tzinfo=zone(tz)).timestamp()


def best_window(when: float, tz: str, rules: Rules) -> float:
    """The first moment at or after ``when`` inside one of the member's best send windows (local time).

    Weekdays and weekends have their own windows (policy); with none configured, ``when`` itself.
    """
    if not rules.best_weekday and not rules.best_weekend:
        return when
    local = datetime.fromtimestamp(when, zone(tz))
    for days in range(8):
        day = (local + timedelta(days=days)).date()
        spans = rules.best_weekend if day.weekday() >= 5 else rules.best_weekday
        for start, end in spans:
            opens = datetime(day.year, day.month, day.day, start // 60, start % 60, tzinfo=zone(tz))
            closes = datetime(day.year, day.month, day.day, end // 60, end % 60, tzinfo=zone(tz))
            if closes.timestamp() <= when:
                continue
            return max(when, opens.timestamp())
    return when
