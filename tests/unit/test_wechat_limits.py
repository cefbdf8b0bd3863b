"""WeChat subscribe-message values: each data type's limit, checked before the provider sees it."""

from __future__ import annotations

import pytest

from compliance.content import Draft, WechatDataRule, content_pipeline, run
from compliance.policy import load_policy
from compliance.wechat import check_data, kind_of
from templates.renderer import InvalidTemplate, Renderer, load_catalog, parse_template


def _data(**values: str) -> dict[str, dict[str, str]]:
    return {k: {"value": v} for k, v in values.items()}


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("thing1", "积分到账" * 5),  # 20 characters: the most a thing holds
        ("number2", "28600"),
        ("number3", "12.5"),
        ("letter4", "VIP"),
        ("symbol5", "~!@#"),
        ("character_string6", "FLY-2026_01"),
        ("time7", "2026年12月1日 15:01"),
        ("time8", "15:01~16:30"),
        ("date9", "2026年12月31日"),
        ("date10", "2026-12-31"),
        ("amount11", "¥128.50元"),
        ("phone_number12", "+86-0766-66888866"),
        ("car_number13", "粤A8Z888挂"),
        ("name14", "欧阳娜娜"),
        ("name15", "Lina Zhou"),
        ("phrase16", "配送中"),
        ("enum17", "whatever the mini program lists"),  # a type not checked here: passed on
    ],
)
def test_values_within_their_type_pass(key: str, value: str) -> None:
    assert check_data(_data(**{key: value})) is None


@pytest.mark.parametrize(
    ("key", "value", "code"),
    [
        ("thing1", "积分到账" * 5 + "啦", "content_too_long"),  # 21 characters
        ("number2", "12a", "invalid_content"),
        ("number3", "1" * 33, "content_too_long"),
        ("letter4", "VIP1", "invalid_content"),
        ("symbol5", "!!!!!!", "content_too_long"),
        ("character_string6", "中文", "invalid_content"),
        ("time7", "下午三点", "invalid_content"),
        ("date8", "明天", "invalid_content"),
        ("amount9", "¥12345678901", "invalid_content"),
        ("phone_number10", "+86-0766-668888661234", "content_too_long"),
        ("car_number11", "粤A8Z888挂12", "content_too_long"),
        ("name12", "欧阳娜娜欧阳娜娜欧阳娜", "content_too_long"),  # 11 Chinese characters
        ("phrase13", "正在配送中哦", "content_too_long"),
        ("phrase14", "ok", "invalid_content"),
        ("thing15", "第一行\n第二行", "invalid_content"),
        ("thing16", "  ", "invalid_content"),
    ],
)
def test_values_past_their_type_are_refused_naming_the_field(key: str, value: str, code: str) -> None:
    found = check_data(_data(**{key: value}))
    assert found is not None
    assert found["code"] == code
    assert found["field"] == f"data.{key}.value"
    assert key in found["detail"]


def test_the_type_is_the_key_prefix() -> None:
    assert kind_of("thing1") is not None and kind_of("thing1") is kind_of("thing12")
    assert kind_of("character_string3") is not None and kind_of("character_string3") is not kind_of("thing1")
    assert kind_of("nonsense") is None


POLICY = load_policy()


def _draft(channel: str, fields: dict[str, object]) -> Draft:
    return Draft(
        channel=channel, category="transactional", brand=None, fields=fields, rules=POLICY.rules(None, None)
    )


def test_the_rule_runs_for_wechat_only_and_is_not_a_decision_elsewhere() -> None:
    pipeline = content_pipeline(POLICY.matcher)
    sms = _draft("sms", {"text": "【星耀商城】您的积分已到账。"})
    assert run(pipeline, sms) is None
    assert "wechat" not in [d[0] for d in sms.decisions]
    wechat = _draft("wechat", {"template_id": "tmpl-1", "data": _data(thing1="积分" * 11)})
    verdict = run(pipeline, wechat)
    assert verdict is not None and verdict.rule == "wechat"
    assert verdict.reason["field"] == "data.thing1.value"
    assert (
        WechatDataRule().check(_draft("wechat", {"data": _data(thing1="好")})) is not None
    )  # no template_id


def test_a_wechat_variant_renders_its_page_and_data_from_params() -> None:
    out = Renderer(load_catalog()).render(
        "points_credited", "wechat", {"name": "李女士", "points": 200, "balance": 28600, "source": "消费"}
    )
    assert out == {
        "template_id": "tmpl-points-credited",
        "page": "pages/points/index?from=notice",
        "data": {
            "name1": {"value": "李女士"},
            "number2": {"value": "200"},
            "number3": {"value": "28600"},
            "thing4": {"value": "消费获得积分"},
        },
    }


@pytest.mark.parametrize(
    "variant",
    [
        {"page": "p", "data": {"thing1": "x"}},  # no template_id
        {"template_id": "t"},  # no data
        {"template_id": "t", "data": {"Thing": "x"}},  # a key without a type and number
        {"template_id": "t", "data": {"thing1": "x"}, "text": "y"},  # an unknown field
        {"template_id": "t", "data": {"thing1": "{{ x.__class__ }}"}},  # what the sandbox refuses
    ],
)
def test_a_malformed_wechat_variant_is_refused_at_load(variant: dict[str, object]) -> None:
    with pytest.raises(InvalidTemplate):
        parse_template({"name": "t", "wechat": variant}, source="t.toml")
