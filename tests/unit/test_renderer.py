from __future__ import annotations

import pytest

from templates.renderer import (
    MissingParam,
    Renderer,
    TemplateError,
    TemplateNotFound,
    load_catalog,
    parse_template,
)


@pytest.fixture(scope="module")
def renderer() -> Renderer:
    return Renderer(load_catalog())


def test_catalog_ships_the_three_templates_in_chinese(renderer: Renderer) -> None:
    assert {"points_expiry", "points_credited", "member_day"} <= set(renderer.catalog)
    for tpl in renderer.catalog.values():
        assert set(tpl.variants) == {"sms", "mms", "push", "email"}


def test_points_expiry_sms(renderer: Renderer) -> None:
    out = renderer.render(
        "points_expiry",
        "sms",
        {"name": "李女士", "points": 28600, "days": 12, "tier": "银卡", "code": "FLY2026"},
    )
    assert out["text"] == "尊敬的银卡会员李女士,您的28600积分将于12天后清零,请尽快兑换。限时兑换码:FLY2026 "


def test_missing_param_fails_instead_of_printing_blank(renderer: Renderer) -> None:
    with pytest.raises(MissingParam) as err:
        renderer.render("points_expiry", "sms", {"name": "李女士"})
    assert err.value.names == ["points", "days"]


def test_undeclared_variable_is_a_missing_param() -> None:
    tpl = parse_template({"name": "t", "params": {}, "sms": {"text": "您好{{ who }}"}}, source="t")
    with pytest.raises(MissingParam) as err:
        Renderer({"t": tpl}).render("t", "sms", {})
    assert err.value.names == ["who"]


def test_sandbox_blocks_attribute_escapes() -> None:
    tpl = parse_template(
        {"name": "evil", "sms": {"text": "{{ ''.__class__.__mro__[1].__subclasses__() }}"}}, source="e"
    )
    with pytest.raises(TemplateError):
        Renderer({"evil": tpl}).render("evil", "sms", {})


def test_html_is_escaped_text_is_not(renderer: Renderer) -> None:
    out = renderer.render("points_expiry", "email", {"name": "<b>李", "points": 1, "days": 2})
    assert "&lt;b&gt;李" in out["html"] and out["subject"].startswith("<b>李")


def test_unknown_template_and_channel(renderer: Renderer) -> None:
    with pytest.raises(TemplateNotFound):
        renderer.render("nope", "sms", {})
    tpl = parse_template({"name": "smsonly", "sms": {"text": "hi"}}, source="s")
    with pytest.raises(TemplateNotFound):
        Renderer({"smsonly": tpl}).render("smsonly", "email", {})
