from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from compliance.content import Draft, content_pipeline, run
from compliance.policy import PolicyError, load_policy, parse_policy
from compliance.timing import cap_month, quiet_release

POLICY = load_policy()
RULES = POLICY.rules(None, "星耀商城")
PIPE = content_pipeline(POLICY.matcher)
SH = ZoneInfo("Asia/Shanghai")


def draft(
    text: str, category: str = "marketing", brand: str | None = "星耀商城", channel: str = "sms"
) -> Draft:
    return Draft(channel=channel, category=category, brand=brand, fields={"text": text}, rules=RULES)


def test_marketing_sms_gets_signature_and_footer() -> None:
    d = draft("您的积分即将清零")
    assert run(PIPE, d) is None
    assert d.fields["text"] == "【星耀商城】您的积分即将清零 拒收请回复R"
    assert (d.encoding, d.segments) == ("UCS-2", 1)
    assert [name for name, _, _ in d.decisions] == [
        "content",
        "brand",
        "wording",
        "signature",
        "unsubscribe_footer",
        "length",
    ]


@pytest.mark.parametrize(
    "footer", ["回TD退订", "拒收请回复R", "回T退订", "退订回T", "回 td 退订", "回ＴＤ退订"]
)
def test_existing_footer_is_kept(footer: str) -> None:
    d = draft(f"【星耀商城】会员日双倍积分{footer}")
    assert run(PIPE, d) is None and d.fields["text"].endswith(footer) and d.fields["text"].count("退订") <= 1


def test_transactional_must_not_carry_a_footer() -> None:
    assert run(PIPE, draft("您获得200积分", category="transactional")) is None
    v = run(PIPE, draft("您获得200积分回TD退订", category="transactional"))
    assert v is not None and v.reason["code"] == "unsubscribe_on_transactional"


def test_signature_mismatch_and_missing() -> None:
    v = run(PIPE, draft("【别家商城】您好"))
    assert v is not None and v.reason["code"] == "signature_mismatch"
    v = run(PIPE, draft("您好", brand=None))
    assert v is not None and v.reason["code"] == "missing_signature"
    # Signed by hand with no brand: the signature must be a registered brand's.
    d = draft("【星耀商城】您好", brand=None)
    assert run(PIPE, d) is None and d.fields["text"].startswith("【星耀商城】您好")


BASE_TOML = """
[defaults]
monthly_cap = 4
quiet_start = "21:00"
quiet_end = "08:00"
unsubscribe_footer = "拒收请回复R"
max_sms_chars = 500
"""
BRANDS_TOML = (
    BASE_TOML
    + """[brands."星耀商城"]
[brands."甲"]
signature = "甲商城"
[tenants.acme.brands."乙"]
[tenants.own]
any_brand = true
"""
)
BRANDS = parse_policy(BRANDS_TOML)


@pytest.mark.parametrize(
    ("tenant", "brand", "text", "code"),
    [
        (None, "星耀商城", "您好", None),
        (None, "不存在的品牌", "您好", "unknown_brand"),
        (None, "不存在的品牌", "【不存在的品牌】您好", "unknown_brand"),
        (None, "乙", "您好", "unknown_brand"),  # registered for acme only
        ("acme", "乙", "您好", None),
        ("acme", "星耀商城", "您好", None),  # the policy's brands serve every tenant
        ("other", "乙", "您好", "unknown_brand"),
        ("own", "自家品牌", "您好", None),  # opted into any brand explicitly
        # No brand: the text's own signature must be one a registered brand uses.
        (None, None, "【不存在的品牌】您好", "unknown_brand"),
        (None, None, "【星耀商城】您好", None),
        (None, None, "【甲商城】您好", None),
        (None, None, "【甲】您好", "unknown_brand"),  # 甲 signs as 甲商城
        ("acme", None, "【乙】您好", None),
        ("own", None, "【自家品牌】您好", None),
    ],
)
def test_only_registered_brands_send(
    tenant: str | None, brand: str | None, text: str, code: str | None
) -> None:
    d = Draft(
        channel="sms",
        category="marketing",
        brand=brand,
        fields={"text": text},
        rules=BRANDS.rules(tenant, brand),
    )
    v = run(content_pipeline(BRANDS.matcher), d)
    assert (v.reason["code"] if v else None) == code
    if code:
        assert v is not None and v.rule == "brand" and d.decisions[-1] == ("brand", "reject", "unknown_brand")


def test_unknown_brand_on_every_channel() -> None:
    for channel, fields in (
        ("email", {"subject": "积分", "text": "您好"}),
        ("push", {"title": "积分", "body": "您好"}),
    ):
        d = Draft(
            channel=channel,
            category="marketing",
            brand="不存在的品牌",
            fields=fields,
            rules=BRANDS.rules(None, "不存在的品牌"),
        )
        v = run(content_pipeline(BRANDS.matcher), d)
        assert v is not None and v.reason["code"] == "unknown_brand"


def test_the_footer_is_separated_as_the_policy_says() -> None:
    assert RULES.footer_separator == " "
    for sep, expected in (
        (None, "【甲商城】积分清零 拒收请回复R"),
        ("，", "【甲商城】积分清零，拒收请回复R"),
        ("", "【甲商城】积分清零拒收请回复R"),
    ):
        extra = "" if sep is None else f'footer_separator = "{sep}"\n'
        p = parse_policy(BRANDS_TOML.replace('signature = "甲商城"\n', f'signature = "甲商城"\n{extra}'))
        d = Draft(
            channel="sms",
            category="marketing",
            brand="甲",
            fields={"text": "积分清零"},
            rules=p.rules(None, "甲"),
        )
        assert run(content_pipeline(p.matcher), d) is None
        assert d.fields["text"] == expected
        # The footer and its separator count: segments are of the text as sent.
        assert (
            d.segments == 1
            and len(d.fields["text"]) == len("【甲商城】积分清零") + len(sep if sep is not None else " ") + 6
        )
    with pytest.raises(PolicyError, match="footer_separator"):
        parse_policy(
            BRANDS_TOML.replace('signature = "甲商城"\n', 'signature = "甲商城"\nfooter_separator = "退订"\n')
        )


def test_banned_wording_blocks_with_positions_in_the_callers_text() -> None:
    v = run(PIPE, draft("会员日全场最低价"))
    assert v is not None and v.reason["code"] == "banned_wording"
    assert v.reason["terms"] == [
        {"term": "最低价", "start": 5, "end": 8, "category": "absolute", "field": "text"}
    ]


def test_time_pressure_is_a_warning_not_a_block() -> None:
    d = draft("限时秒杀,积分兑换")
    assert run(PIPE, d) is None
    assert d.warnings[0]["severity"] == "warning" and d.warnings[0]["terms"][0]["term"] == "秒杀"


def test_too_long_is_refused() -> None:
    v = run(PIPE, draft("积" * 495))
    assert v is not None and v.reason["code"] == "content_too_long"


def test_quiet_hours_release_and_cap_month() -> None:
    at = datetime(2026, 11, 25, 23, 0, tzinfo=SH).timestamp()
    assert (
        quiet_release(at, "Asia/Shanghai", "marketing", RULES)
        == datetime(2026, 11, 26, 8, 0, tzinfo=SH).timestamp()
    )
    assert quiet_release(at, "Asia/Shanghai", "transactional", RULES) is None
    early = datetime(2026, 11, 26, 7, 59, tzinfo=SH).timestamp()
    assert (
        quiet_release(early, "Asia/Shanghai", "marketing", RULES)
        == datetime(2026, 11, 26, 8, 0, tzinfo=SH).timestamp()
    )
    assert (
        quiet_release(
            datetime(2026, 11, 26, 8, 0, tzinfo=SH).timestamp(), "Asia/Shanghai", "marketing", RULES
        )
        is None
    )
    # 23:30 in Shanghai is 15:30 UTC: still November there and in UTC; 00:30 on Dec 1 in Shanghai is Nov 30 UTC.
    month, ends = cap_month(datetime(2026, 12, 1, 0, 30, tzinfo=SH).timestamp(), "Asia/Shanghai")
    assert month == "2026-12" and ends == datetime(2027, 1, 1, tzinfo=SH).timestamp()
    assert cap_month(datetime(2026, 11, 30, 23, 59, tzinfo=SH).timestamp(), "Asia/Shanghai")[0] == "2026-11"


def test_overrides_resolve_in_order() -> None:
    p = parse_policy(
        BASE_TOML
        + """[brands."甲"]
unsubscribe_footer = "回TD退订"
[tenants.acme]
monthly_cap = 6
[tenants.acme.brands."甲"]
quiet_start = "22:00"
"""
    )
    r = p.rules("acme", "甲")
    assert (r.monthly_cap, r.unsubscribe_footer, r.quiet_start) == (6, "回TD退订", 22 * 60)
    assert p.rules("other", "甲").monthly_cap == 4


@pytest.mark.parametrize(
    ("fields", "channel", "field"),
    [
        ({"text": "积分\u202e到账"}, "sms", "text"),  # right-to-left override
        ({"text": "积分\u2066到账\u2069"}, "sms", "text"),  # isolate
        ({"text": "积分\x00到账"}, "sms", "text"),
        ({"text": "积分\x1b[31m到账"}, "sms", "text"),  # a terminal escape
        ({"subject": "积分到账\r\nBcc: all@example.com", "text": "您好"}, "email", "subject"),
        ({"title": "积分\n到账", "body": "您好"}, "push", "title"),
        ({"title": "积分到账", "body": "您好\u202d"}, "push", "body"),
    ],
)
def test_control_characters_bidi_overrides_and_header_breaks_are_refused(
    fields: dict[str, str], channel: str, field: str
) -> None:
    d = Draft(channel=channel, category="transactional", brand="星耀商城", fields=dict(fields), rules=RULES)
    v = run(PIPE, d)
    assert v is not None and v.reason["code"] == "invalid_content" and v.reason["field"] == field


def test_line_breaks_and_tabs_in_a_text_body_are_fine() -> None:
    d = Draft(
        channel="sms",
        category="transactional",
        brand="星耀商城",
        fields={"text": "您好:\n积分\t200"},
        rules=RULES,
    )
    assert run(PIPE, d) is None
