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


def quiet_release(when: float, tz: str, category: str, rules: Rules) -> float | None:
    """If ``when`` falls in the member's quiet hours for this category, the epoch time they end; else None."""
    if category not in rules.quiet_categories or rules.quiet_start == rules.quiet_end:
        return None
    # Quiet hours start and end on whole minutes: every time in the same minute has the same answer.
    return _quiet_release_minute(int(when // 60), tz, rules.quiet_start, rules.quiet_end)


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
