"""The state rules on a fixed clock and a dict-backed member state: what the Lua scripts apply."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from compliance.policy import load_policy
from compliance.state import Moment, state_rules

RULES = load_policy().rules(None, "星耀商城")
SH = ZoneInfo("Asia/Shanghai")
STATE = state_rules()


class Member:
    """A member's opt-outs and cap use, as the accept script reads them from Redis."""

    def __init__(self, scopes: set[str], used: int = 0) -> None:
        self.scopes = scopes
        self.used = used

    def opted_out(self, scopes: tuple[str, ...]) -> bool:
        return any(s in self.scopes for s in scopes)

    def cap_used(self) -> int:
        return self.used


def at(hour: int, minute: int = 0) -> float:
    return datetime(2026, 12, 1, hour, minute, tzinfo=SH).timestamp()


def moment(now: float, category: str = "marketing", expires_at: float | None = None) -> Moment:
    return Moment(now, now, "Asia/Shanghai", category, expires_at, RULES)


def test_opt_out_scopes_and_verdict() -> None:
    rule = STATE.opt_out
    assert rule.scopes("星耀商城", "sms") == ("*|*", "*|sms", "星耀商城|*", "星耀商城|sms")
    assert rule.scopes("", "email") == ("*|*", "*|email")
    assert rule.decide(Member({"星耀商城|sms"}), "星耀商城", "sms") == rule.reason()
    assert rule.decide(Member({"星耀商城|email"}), "星耀商城", "sms") is None
    assert rule.decide(Member({"*|*"}), "别的品牌", "push") is not None
    assert rule.reason(since_accept=True)["detail"] != rule.reason()["detail"]


def test_frequency_cap_counts_marketing_in_the_members_month() -> None:
    rule = STATE.frequency_cap
    slot = rule.slot(moment(at(12)))
    assert slot is not None and slot.month == "2026-12" and slot.limit == RULES.monthly_cap
    assert rule.slot(moment(at(12), category="transactional")) is None
    assert rule.decide(Member(set(), used=RULES.monthly_cap - 1), slot) is None
    full = rule.decide(Member(set(), used=RULES.monthly_cap), slot)
    assert full is not None and full["code"] == "frequency_cap"


def test_quiet_hours_and_expiry() -> None:
    quiet = STATE.quiet_hours.decide(moment(at(22)))
    assert quiet.outcome == "defer" and quiet.release == datetime(2026, 12, 2, 8, 0, tzinfo=SH).timestamp()
    assert STATE.quiet_hours.decide(moment(at(12))).outcome == "pass"
    assert STATE.quiet_hours.decide(moment(at(22), category="transactional")).outcome == "pass"
    m = moment(at(12), expires_at=at(12))
    assert STATE.expiry.decide(m, at(12), "late").outcome == "suppress"  # at accept: at expiry is too late
    assert STATE.expiry.decide(m, at(12), "late", at_expiry=False).outcome == "pass"  # at dispatch: after it
