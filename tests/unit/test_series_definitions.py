"""Series definitions and planning: durations, validation, best windows, past and expired steps."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from compliance.policy import load_policy
from gateway.series.planning import days_left, expires_on, plan
from templates.series import InvalidDefinition, load_definitions, parse_definition, parse_duration

SH = ZoneInfo("Asia/Shanghai")
RULES = load_policy(None).rules(None, "星耀商城")  # quiet hours 21:00-08:00, the default best windows


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("-P30D", -30 * 86400),
        ("-PT10S", -10),
        ("P1W", 604800),
        ("-P1DT12H", -129600),
        ("-PT1.5S", -1.5),
        ("PT2M", 120),
    ],
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["-P1M", "P1Y", "-P", "PT", "-P1X", "30D", "", "-P1DT"])
def test_what_is_not_a_duration(text: str) -> None:
    with pytest.raises(ValueError, match="ISO 8601"):
        parse_duration(text)


def test_the_shipped_definitions_parse_in_order() -> None:
    shipped = load_definitions()
    assert [s.offset_text for s in shipped["points_expiry"].steps] == ["-P30D", "-P7D", "-P1D"]
    assert [s.offset_text for s in shipped["points_expiry_short"].steps] == ["-P30D", "-P15D", "-P3D"]
    assert shipped["points_expiry"].version != shipped["points_expiry_short"].version


def test_every_problem_of_a_document_is_reported() -> None:
    with pytest.raises(InvalidDefinition) as caught:
        parse_definition(
            {
                "category": "promo",
                "exit_on": ["Points Redeemed"],
                "extra": 1,
                "steps": [
                    {"name": "a", "offset": "P1D", "template": "t", "channel": "sms"},
                    {"name": "a", "offset": "-P2D", "template": "t", "channel": "sms", "window": "soon"},
                ],
            },
            name="demo",
        )
    fields = [f for f, _ in caught.value.problems]
    assert fields == ["extra", "category", "exit_on", "steps[0].offset", "steps[1].window"]


def local(*args: int) -> float:
    return datetime(*args, tzinfo=SH).timestamp()


def test_best_windows_past_and_expired_steps() -> None:
    definition = load_definitions()["points_expiry"]
    anchor = local(2026, 12, 31, 23, 59, 59)
    # Started on Tuesday 12-01 at 09:00: d30 goes in Wednesday's 10:00 window, d7 (Thursday night) in
    # Friday's, d1 (window any) at its offset.
    planned = plan(definition, anchor, local(2026, 12, 1, 9, 0), "Asia/Shanghai", RULES)
    assert [p.status for p in planned] == ["pending"] * 3
    assert [p.due for p in planned] == [local(2026, 12, 2, 10), local(2026, 12, 25, 10), anchor - 86400]
    # Started ten days before the anchor: the 30-day step's time has passed.
    late = plan(definition, anchor, local(2026, 12, 21, 12, 0), "Asia/Shanghai", RULES)
    assert [p.status for p in late] == ["skipped", "pending", "pending"]
    assert late[0].reasons[0]["code"] == "past"
    # Points clearing at 07:00: a step five hours before falls at 02:00, inside quiet hours, which would
    # hold it until 08:00, after the anchor: it is skipped as expired when the series begins.
    night = parse_definition(
        {
            "steps": [
                {"name": "eve", "offset": "-PT12H", "template": "t"},
                {"name": "small_hours", "offset": "-PT5H", "template": "t"},
            ]
        },
        name="night",
    )
    early = plan(night, local(2026, 12, 31, 7, 0), local(2026, 12, 30, 12, 0), "Asia/Shanghai", RULES)
    assert [p.status for p in early] == ["pending", "skipped"] and early[1].reasons[0]["code"] == "expired"


def test_the_params_the_gateway_adds() -> None:
    anchor = local(2026, 12, 31, 23, 59, 59)
    assert expires_on(anchor, "Asia/Shanghai") == "12月31日"
    assert days_left(anchor, anchor - 7 * 86400) == 7 and days_left(anchor, anchor - 6.5 * 86400) == 7
    assert days_left(anchor, anchor - 20) == 1
