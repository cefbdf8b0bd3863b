from __future__ import annotations

import random
from typing import Any

import jinja2
import jinja2.meta
import pytest

from templates.renderer import (
    InvalidTemplate,
    MissingParam,
    Renderer,
    TemplateError,
    TemplateNotFound,
    _html_env,
    _text_env,
    load_catalog,
    parse_template,
    run_steps,
    simple_steps,
)
from templates.wechat import check_variant


@pytest.fixture(scope="module")
def renderer() -> Renderer:
    return Renderer(load_catalog())


def test_catalog_ships_the_three_templates_in_chinese(renderer: Renderer) -> None:
    assert {"points_expiry", "points_credited", "member_day"} <= set(renderer.catalog)
    for tpl in renderer.catalog.values():
        if tpl.category == "verification":  # a code goes by SMS or a call, nowhere else
            assert "sms" in tpl.variants and set(tpl.variants) <= {"sms", "voice"}
        else:
            assert (
                {"sms", "mms", "push", "email"}
                <= set(tpl.variants)
                <= {"sms", "mms", "push", "email", "voice", "wechat"}
            )
    # Calls where a call makes sense: the expiry warning and the credit notice, not the member-day promotion.
    voiced = {name for name, tpl in renderer.catalog.items() if "voice" in tpl.variants}
    assert {"points_expiry", "points_credited", "verification_code"} <= voiced and "member_day" not in voiced


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
    # Written literally, the escape is refused when the template is parsed (stored or loaded)...
    with pytest.raises(InvalidTemplate, match="'__class__', '__mro__', '__subclasses__' not available"):
        parse_template(
            {"name": "evil", "sms": {"text": "{{ ''.__class__.__mro__[1].__subclasses__() }}"}}, source="e"
        )
    # ...and built at render time, the sandbox still refuses it.
    tpl = parse_template(
        {"name": "evil", "sms": {"text": "{% set a = '__cla' ~ 'ss__' %}{{ ''[a] }}"}}, source="e"
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


# -- the fast path renders exactly what Jinja renders ------------------------------------------
VALUES: list[object] = ["李女士", "", None, 0, 28600, 12.5, True, "<b>&'\"", "{{ name }}"]
SIMPLE_SOURCES = [
    "{{ name }},您好",
    "尊敬的{{ tier|default('') }}会员{{ name }}",
    "{{ tier|default('普通<>') }}",
    "{% if code is defined %}码:{{ code }}{% else %}无码{% endif %}/{{ name }}",
    "{% if a is defined %}{% if b is defined %}{{ a }}{{ b }}{% else %}{{ a }}{% endif %}{% endif %}",
    "纯文本,没有变量\n",
]
NOT_SIMPLE = [
    "{{ name|upper }}",
    "{{ name ~ '!' }}",
    "{% for x in items %}{{ x }}{% endfor %}",
    "{% if code %}{{ code }}{% endif %}",
    "{{ tier|default(name) }}",
    "{{ user.name }}",
    "{% if code is not defined %}-{% endif %}",
]


_COMPILED: dict[tuple[int, str], Any] = {}


def _jinja(env: Any, source: str, params: dict[str, object]) -> str:
    """Jinja's own rendering, called as the Renderer calls it (``link`` in the context)."""
    tpl = _COMPILED.get((id(env), source))
    if tpl is None:
        tpl = _COMPILED[(id(env), source)] = env.from_string(source)
    return "".join(tpl.root_render_func(tpl.new_context({**params, "link": lambda url: url}, shared=True)))


def _fast(env: Any, source: str, params: dict[str, object]) -> str:
    steps = simple_steps(env, source)
    assert steps is not None, source
    out: list[str] = []
    run_steps(steps, params, env.autoescape is True, out)
    return "".join(out)


def _param_sets(names: list[str]) -> list[dict[str, object]]:
    sets: list[dict[str, object]] = [{}]
    for name in names:
        sets = [dict(s) for s in sets] + [{**s, name: v} for s in sets for v in VALUES[:4]]
    rng = random.Random(3)
    return sets + [{n: rng.choice(VALUES) for n in names} for _ in range(50)]


@pytest.mark.parametrize("env", [_text_env, _html_env], ids=["text", "html"])
@pytest.mark.parametrize("source", SIMPLE_SOURCES)
def test_fast_path_matches_jinja(env: Any, source: str) -> None:
    names = sorted(jinja2.meta.find_undeclared_variables(env.parse(source)))
    for params in _param_sets(names):
        try:
            expected: object = _jinja(env, source, params)
        except jinja2.UndefinedError as exc:
            expected = ("missing", str(exc).split("'")[1])
        try:
            got: object = _fast(env, source, params)
        except MissingParam as exc:
            got = ("missing", exc.names[0])
        assert got == expected, (source, params)


def test_every_catalog_variant_takes_the_fast_path_and_matches_jinja(renderer: Renderer) -> None:
    for tpl in renderer.catalog.values():
        for channel, variant in tpl.variants.items():
            # A [wechat] variant's sources are its page and each data value (template_id is an id).
            fields = check_variant(variant, tpl.name) if channel == "wechat" else variant.items()
            for field, source in fields:
                if field == "media":
                    continue
                env = _html_env if field == "html" else _text_env
                assert simple_steps(env, source) is not None, (tpl.name, channel, field)
                for params in _param_sets(sorted(tpl.params))[:200]:
                    try:
                        expected: object = _jinja(env, source, params)
                    except jinja2.UndefinedError:
                        expected = "missing"
                    try:
                        got: object = _fast(env, source, params)
                    except MissingParam:
                        got = "missing"
                    assert got == expected, (tpl.name, channel, field, params)


@pytest.mark.parametrize("source", NOT_SIMPLE)
def test_anything_else_renders_through_jinja(source: str) -> None:
    assert simple_steps(_text_env, source) is None
    tpl = parse_template(
        {"name": "x", "params": {"name": {}, "code": {"required": False}}, "sms": {"text": source}},
        source="t",
    )
    r = Renderer({"x": tpl})
    params = {"name": "王先生", "code": "A1", "items": [1, 2], "tier": None, "user": {"name": "n"}}
    try:
        expected: object = _jinja(_text_env, source, params)
    except jinja2.UndefinedError:
        expected = "missing"
    try:
        got: object = r.render("x", "sms", params)["text"]
    except (MissingParam, TemplateError):
        got = "missing"
    assert got == expected
