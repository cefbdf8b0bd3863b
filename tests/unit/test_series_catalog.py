"""The reminder-series templates and series files: they render, pass the content rules, and fit an SMS."""

from __future__ import annotations

import itertools
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest

from compliance.content import Draft, content_pipeline, run
from compliance.policy import load_policy
from templates.renderer import CATALOG_DIR, CHANNEL_FIELDS, MissingParam, Renderer, load_catalog

POLICY = load_policy()  # the shipped policy: banned terms, look-alikes, the 星耀商城 footer
BRAND = "星耀商城"
RULES = POLICY.rules(None, BRAND)
PIPE = content_pipeline(POLICY.matcher)
RENDERER = Renderer(load_catalog())
SERIES_DIR = CATALOG_DIR.parent / "series"

# Template -> the days_left the series sends it with.
TEMPLATES = {
    "points_expiry_30d": 30,
    "points_expiry_7d": 7,
    "points_expiry_1d": 1,
    "points_expiry_short_30d": 30,
    "points_expiry_short_15d": 15,
    "points_expiry_short_3d": 3,
}
PARAMS = {
    "name": True,
    "points": True,
    "expires_on": True,
    "days_left": True,
    "tier": False,
    "items": False,
    "code": False,
}
OPTIONAL = {"tier": "银卡", "items": "电饭煲、咖啡券", "code": "XY2026"}
# Every combination of the optional params, from none to all three.
OPTIONAL_SETS = [
    dict(combo) for n in range(len(OPTIONAL) + 1) for combo in itertools.combinations(OPTIONAL.items(), n)
]
# Two UCS-2 segments (2 x 67): the whole SMS as sent, signature and footer included.
MAX_SMS = 134
FOOTER = " 拒收请回复R"


def params(days_left: int, **optional: str) -> dict[str, Any]:
    """Sample params as the gateway would pass them for one step."""
    return {"name": "李女士", "points": 28600, "expires_on": "12月31日", "days_left": days_left, **optional}


def check(channel: str, fields: dict[str, Any]) -> Draft:
    """The draft after the shipped content rules, which must neither reject it nor warn."""
    draft = Draft(channel=channel, category="marketing", brand=BRAND, fields=dict(fields), rules=RULES)
    verdict = run(PIPE, draft)
    assert verdict is None, (channel, fields, verdict.reason if verdict else None)
    assert draft.warnings == [], (channel, fields, draft.warnings)
    return draft


# The reminder templates are texts: every channel but voice (a call is a template of its own, with a
# [voice] variant, like points_expiry's).
TEXT_CHANNELS = sorted(set(CHANNEL_FIELDS) - {"voice"})


@pytest.mark.parametrize("name", sorted(TEMPLATES))
def test_template_declares_the_series_params_and_every_channel(name: str) -> None:
    tpl = RENDERER.get(name)
    assert tpl.category == "marketing"
    assert tpl.params == PARAMS
    assert set(tpl.variants) == set(TEXT_CHANNELS)
    with pytest.raises(MissingParam) as err:
        RENDERER.render(name, "sms", {"name": "李女士", "points": 28600})
    assert err.value.names == ["expires_on", "days_left"]


@pytest.mark.parametrize("channel", TEXT_CHANNELS)
@pytest.mark.parametrize("name", sorted(TEMPLATES))
def test_every_variant_renders_and_passes_the_content_rules(name: str, channel: str) -> None:
    for optional in OPTIONAL_SETS:
        out = RENDERER.render(name, channel, params(TEMPLATES[name], **optional))
        for field in ("text", "subject", "title", "html"):
            if field in out:
                assert out[field].strip(), (name, channel, field, optional)
        check(channel, out)


@pytest.mark.parametrize("name", sorted(TEMPLATES))
def test_sms_is_short_and_carries_what_it_was_given(name: str) -> None:
    for optional in OPTIONAL_SETS:
        text = RENDERER.render(name, "sms", params(TEMPLATES[name], **optional))["text"]
        # The template carries neither the signature nor the footer: the gateway adds both.
        assert "【" not in text and "拒收" not in text and "退订" not in text
        for value in ("李女士", "28600", "12月31日", *optional.values()):
            assert value in text, (name, value, text)
        # Typical values, every optional param given: one segment's worth of the caller's text.
        assert len(text) <= 70, (name, len(text), text)
        draft = check("sms", {"text": text})
        sent = draft.fields["text"]
        assert sent == f"【{BRAND}】{text}{FOOTER}"
        assert len(sent) <= MAX_SMS and draft.segments is not None and draft.segments <= 2, (name, sent)
        if not optional:
            # Required params only: signature, text and footer in a single segment.
            assert draft.segments == 1, (name, len(sent), sent)


def _days(offset: str) -> int:
    """Days before expiry of an offset written ``-P<n>D``."""
    found = re.fullmatch(r"-P(\d+)D", offset)
    assert found, f"offset {offset!r} is not -P<n>D"
    return int(found.group(1))


EXPECTED_STEPS = {
    "points_expiry": [
        ("d30", "-P30D", "points_expiry_30d", "sms", [], "best"),
        ("d7", "-P7D", "points_expiry_7d", "sms", [], "best"),
        ("d1", "-P1D", "points_expiry_1d", "sms", ["push"], "any"),
    ],
    "points_expiry_short": [
        ("d30", "-P30D", "points_expiry_short_30d", "sms", [], "best"),
        ("d15", "-P15D", "points_expiry_short_15d", "push", ["sms"], "best"),
        ("d3", "-P3D", "points_expiry_short_3d", "sms", ["push"], "any"),
    ],
}


def test_the_series_folder_holds_the_two_series() -> None:
    assert sorted(p.stem for p in SERIES_DIR.glob("*.toml")) == sorted(EXPECTED_STEPS)


@pytest.mark.parametrize("series", sorted(EXPECTED_STEPS))
def test_series_file_parses_in_order_with_catalogue_templates(series: str) -> None:
    path: Path = SERIES_DIR / f"{series}.toml"
    with path.open("rb") as fh:
        doc = tomllib.load(fh)
    assert set(doc) == {"name", "category", "description", "exit_on", "steps"}
    assert doc["name"] == series and doc["category"] == "marketing" and doc["description"]
    assert doc["exit_on"] == ["points_redeemed"]
    steps = doc["steps"]
    assert [
        (s["name"], s["offset"], s["template"], s["channel"], s["fallback"], s["window"]) for s in steps
    ] == EXPECTED_STEPS[series]
    days = [_days(s["offset"]) for s in steps]
    assert days == sorted(days, reverse=True) and len(set(days)) == len(days)  # earliest step first
    assert len({s["name"] for s in steps}) == len(steps)
    assert steps[-1]["window"] == "any"  # the last notice must go within 24 h, whatever the hour
    for step, before in zip(steps, days, strict=True):
        tpl = RENDERER.get(step["template"])  # TemplateNotFound if the catalogue lacks it
        assert tpl.category == doc["category"]
        assert step["template"].endswith(f"_{before}d")
        assert step["window"] in ("best", "any")
        assert step["channel"] not in step["fallback"]
        for channel in (step["channel"], *step["fallback"]):
            assert channel in tpl.variants, (series, step["name"], channel)
            check(channel, RENDERER.render(step["template"], channel, params(before, **OPTIONAL)))
