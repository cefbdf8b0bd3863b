"""Voice calls on a fixed clock: the stricter quiet windows, no links, the length limit, no SMS footer."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from compliance.content import Draft, content_pipeline, run
from compliance.policy import PolicyError, load_policy, parse_policy
from compliance.state import Moment, state_rules
from compliance.timing import quiet_release
from templates.renderer import InvalidTemplate, parse_template

POLICY = load_policy()
RULES = POLICY.rules(None, "星耀商城")
PIPE = content_pipeline(POLICY.matcher)
SH = ZoneInfo("Asia/Shanghai")
QUIET = state_rules().quiet_hours


def at(hour: int, minute: int = 0, day: int = 1) -> float:
    return datetime(2026, 12, day, hour, minute, tzinfo=SH).timestamp()


def local(epoch: float | None) -> datetime | None:
    return None if epoch is None else datetime.fromtimestamp(epoch, SH)


def call(now: float, category: str = "marketing") -> Moment:
    return Moment(now, now, "Asia/Shanghai", category, None, RULES, "voice")


def test_the_shipped_policy_keeps_calls_out_of_lunch_and_night() -> None:
    assert RULES.voice_quiet == ((720, 840), (1260, 480))
    assert RULES.voice_quiet_categories == frozenset({"marketing", "transactional"})
    assert RULES.max_voice_chars == 200


@pytest.mark.parametrize(
    ("when", "release"),
    [
        (at(12, 30), datetime(2026, 12, 1, 14, 0, tzinfo=SH)),
        (at(12, 0), datetime(2026, 12, 1, 14, 0, tzinfo=SH)),
        (at(21, 15), datetime(2026, 12, 2, 8, 0, tzinfo=SH)),
        (at(3, 0), datetime(2026, 12, 1, 8, 0, tzinfo=SH)),
        (at(10, 0), None),
        (at(14, 0), None),
        (at(20, 59), None),
    ],
)
def test_a_call_is_held_to_the_end_of_the_window_it_falls_in(when: float, release: datetime | None) -> None:
    verdict = QUIET.decide(call(when, "transactional"))
    assert local(verdict.release) == release
    assert verdict.outcome == ("pass" if release is None else "defer")


def test_an_sms_at_lunch_is_not_held_and_a_transactional_sms_at_night_neither() -> None:
    sms = Moment(at(12, 30), at(12, 30), "Asia/Shanghai", "transactional", None, RULES, "sms")
    assert QUIET.decide(sms).release is None
    night = Moment(at(22, 0), at(22, 0), "Asia/Shanghai", "transactional", None, RULES, "sms")
    assert QUIET.decide(night).release is None
    # The same transactional notice as a call waits for the morning.
    assert local(QUIET.decide(call(at(22, 0), "transactional")).release) == datetime(
        2026, 12, 2, 8, 0, tzinfo=SH
    )


def test_a_category_outside_voice_quiet_categories_is_not_held_by_the_voice_windows() -> None:
    policy = parse_policy(
        '[defaults]\nmonthly_cap = 4\nquiet_start = "21:00"\nquiet_end = "08:00"\n'
        'unsubscribe_footer = "拒收请回复R"\nmax_sms_chars = 500\nvoice_quiet_categories = ["marketing"]\n'
    )
    rules = policy.rules(None, None)
    assert quiet_release(at(12, 30), "Asia/Shanghai", "transactional", rules, "voice") is None
    assert quiet_release(at(12, 30), "Asia/Shanghai", "marketing", rules, "voice") == at(14, 0)


def test_back_to_back_windows_chain_to_the_last_end() -> None:
    policy = parse_policy(
        '[defaults]\nmonthly_cap = 4\nquiet_start = "21:00"\nquiet_end = "08:00"\n'
        'unsubscribe_footer = "拒收请回复R"\nmax_sms_chars = 500\n'
        'voice_quiet = ["07:00-09:00", "09:00-09:30"]\n'
    )
    rules = policy.rules(None, None)
    # 22:00 marketing: the night window ends at 08:00, inside 07:00-09:00, which ends inside 09:00-09:30.
    assert local(quiet_release(at(22, 0), "Asia/Shanghai", "marketing", rules, "voice")) == datetime(
        2026, 12, 2, 9, 30, tzinfo=SH
    )


@pytest.mark.parametrize("window", ["12:00", "25:00-26:00", "12:00-12:00"])
def test_a_malformed_voice_window_is_refused(window: str) -> None:
    with pytest.raises(PolicyError, match="voice_quiet"):
        parse_policy(
            '[defaults]\nmonthly_cap = 4\nquiet_start = "21:00"\nquiet_end = "08:00"\n'
            f'unsubscribe_footer = "R"\nmax_sms_chars = 500\nvoice_quiet = ["{window}"]\n'
        )


def voice(text: str, category: str = "marketing") -> Draft:
    return Draft(channel="voice", category=category, brand="星耀商城", fields={"text": text}, rules=RULES)


def test_voice_text_gets_neither_signature_nor_footer() -> None:
    d = voice("您好,您的28600积分将于12天后清零,请尽快兑换。")
    assert run(PIPE, d) is None
    assert d.fields["text"] == "您好,您的28600积分将于12天后清零,请尽快兑换。"
    assert d.segments is None
    assert ("voice", "pass", None) in d.decisions
    sms = Draft(channel="sms", category="marketing", brand="星耀商城", fields={"text": "积分"}, rules=RULES)
    assert run(PIPE, sms) is None
    assert "voice" not in [name for name, _, _ in sms.decisions]  # asked of calls only


@pytest.mark.parametrize(
    "text", ["请访问 https://t.example.cn/abc 兑换", "登录 www.example.com 兑换", "打开xingyao.cn兑换"]
)
def test_a_link_in_voice_text_is_refused(text: str) -> None:
    verdict = run(PIPE, voice(text))
    assert verdict is not None and verdict.rule == "voice"
    assert verdict.reason["code"] == "invalid_content" and "link" in verdict.reason["detail"]


def test_voice_text_over_the_limit_is_refused_and_at_it_passes() -> None:
    assert run(PIPE, voice("积" * 200)) is None
    verdict = run(PIPE, voice("积" * 201))
    assert verdict is not None and verdict.reason["code"] == "content_too_long"
    assert "201" in verdict.reason["detail"] and "200" in verdict.reason["detail"]


def test_banned_wording_applies_to_calls_too() -> None:
    verdict = run(PIPE, voice("全网最低价,快来兑换"))
    assert verdict is not None and verdict.reason["code"] == "banned_wording"


@pytest.mark.parametrize(
    "text", ['积分兑换 {{ link("https://shop.example.cn") }}', "请访问 https://shop.example.cn 兑换"]
)
def test_a_voice_variant_with_a_link_is_refused_when_stored(text: str) -> None:
    with pytest.raises(InvalidTemplate, match="cannot carry a link"):
        parse_template({"name": "x", "voice": {"text": text}}, source="x.toml")
    # The same text is fine as an SMS variant.
    assert "sms" in parse_template({"name": "x", "sms": {"text": text}}, source="x.toml").variants
