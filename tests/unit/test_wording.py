"""The wording table: banned terms in every disguise are caught with positions; look-alikes pass."""

from __future__ import annotations

import pytest

from compliance.wording import Term, WordingMatcher, load_allowed, load_terms


@pytest.fixture(scope="module")
def matcher() -> WordingMatcher:
    return WordingMatcher(load_terms(), load_allowed())


# (text, expected [(term, start, end)]) — positions index into the text as given.
CAUGHT: list[tuple[str, list[tuple[str, int, int]]]] = [
    # plain
    ("本店全场最低价,快来抢购", [("最低价", 4, 7)]),
    ("史上最大优惠来袭", [("史上最大优惠", 0, 6)]),
    ("全网最低,错过再等一年", [("全网最低", 0, 4)]),
    ("本品销量第一", [("销量第一", 2, 6)]),
    ("国家级品质认证", [("国家级", 0, 3)]),
    ("最佳选择", [("最佳", 0, 2)]),
    ("行业第一品牌", [("行业第一", 0, 4)]),
    ("独一无二的体验", [("独一无二", 0, 4)]),
    ("顶级会员专享", [("顶级", 0, 2)]),
    ("绝对划算", [("绝对", 0, 2)]),
    ("零风险投资", [("零风险", 0, 3)]),
    ("特供茶叶", [("特供", 0, 2)]),
    ("首选品牌", [("首选", 0, 2)]),
    ("世界级工艺", [("世界级", 0, 3)]),
    ("无与伦比的口感", [("无与伦比", 0, 4)]),
    ("永久有效的会员卡", [("永久", 0, 2)]),
    ("100%正品", [("100%", 0, 4)]),
    ("我们是NO.1", [("NO.1", 3, 7)]),
    ("年度TOP1好物", [("TOP1", 2, 6)]),
    ("会员日:全网最低价!", [("全网最低", 4, 8), ("最低价", 6, 9)]),
    ("最畅销单品", [("最畅销", 0, 3)]),
    ("万能清洁剂", [("万能", 0, 2)]),
    # Traditional characters
    ("全場最低價", [("最低价", 2, 5)]),
    ("全網最低", [("全网最低", 0, 4)]),
    ("國家級認證", [("国家级", 0, 3)]),
    ("銷量第一", [("销量第一", 0, 4)]),
    ("獨一無二", [("独一无二", 0, 4)]),
    ("絕對划算", [("绝对", 0, 2)]),
    ("頂級享受", [("顶级", 0, 2)]),
    ("無與倫比", [("无与伦比", 0, 4)]),
    # full-width letters and digits
    ("我们是ＮＯ．１", [("NO.1", 3, 7)]),
    ("年度ＴＯＰ１", [("TOP1", 2, 6)]),
    ("１００％好评", [("100%", 0, 4)]),
    ("no.1的选择", [("NO.1", 0, 4)]),
    # spaces
    ("最 低 价", [("最低价", 0, 5)]),
    ("全 网 最 低", [("全网最低", 0, 7)]),
    ("销量 第一", [("销量第一", 0, 5)]),
    ("最\u3000佳", [("最佳", 0, 3)]),
    # dashes and punctuation
    ("最-低-价", [("最低价", 0, 5)]),
    ("国.家.级", [("国家级", 0, 5)]),
    ("最_低_价", [("最低价", 0, 5)]),
    ("第·一", [("第一", 0, 3)]),
    ("绝—对", [("绝对", 0, 3)]),
    # zero-width characters
    ("最\u200b低价", [("最低价", 0, 4)]),
    ("全\u200d网\u200c最\ufeff低", [("全网最低", 0, 7)]),
    ("顶\u2060级", [("顶级", 0, 3)]),
    # mixed disguises
    ("全 網-最\u200b低 價", [("全网最低", 0, 7), ("最低价", 4, 9)]),
    ("Ｎｏ. 1", [("NO.1", 0, 5)]),
    # time-pressure words are found too, as warnings
    ("限时秒杀", [("秒杀", 2, 4)]),
    ("再不抢就没了!", [("再不抢就没了", 0, 6)]),
]

PASSES: list[str] = [
    "离您最近的门店",
    "今天是兑换的最后一天",
    "最终解释权归本店所有",
    "最初的会员",
    "最早9点开门",
    "最迟明天到账",
    "积分最多可抵扣50%的金额",
    "第一次兑换赠送100积分",
    "第一步:登录会员中心",
    "入会第一天",
    "我们会第一时间通知您",
    "第一期活动",
    "第一季度账单",
    "首次登录有礼",
    "首单立减",
    "您的唯一标识码",
    "极少数商品除外",
    "尊敬的会员李女士,您的28600积分将于12天后清零,请尽快兑换。",
    "casino1号店",  # ASCII terms must stand alone
    "积分100分",
]


@pytest.mark.parametrize(("text", "expected"), CAUGHT, ids=[c[0] for c in CAUGHT])
def test_banned_terms_are_caught_with_positions(
    matcher: WordingMatcher, text: str, expected: list[tuple[str, int, int]]
) -> None:
    hits = matcher.scan(text)
    assert [(h.term, h.start, h.end) for h in hits] == expected
    for h in hits:
        assert text[h.start] != " " and text[h.end - 1] != " "


@pytest.mark.parametrize("text", PASSES)
def test_harmless_look_alikes_pass(matcher: WordingMatcher, text: str) -> None:
    assert matcher.scan(text) == []


def test_table_has_sixty_cases() -> None:
    assert len(CAUGHT) + len(PASSES) >= 60


def test_severities() -> None:
    m = WordingMatcher(load_terms(), load_allowed())
    assert {h.severity for h in m.scan("秒杀最低价")} == {"warning", "block"}


def test_operator_terms_and_exceptions_extend_the_lists() -> None:
    m = WordingMatcher(load_terms([Term("全城最低", "absolute", "block")]), load_allowed(["最高可得"]))
    assert [h.term for h in m.scan("全城最低")] == ["全城最低"]
    assert m.scan("最高可得500积分") == []
    assert [h.term for h in m.scan("最高品质")] == ["最高"]
