"""A scripted A/B campaign: members tap, redeem and opt out at set rates; the report says exactly that."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests.conftest import Stack, wait_for

pytestmark = pytest.mark.integration
BRAND = "星耀商城"


def experiment(name: str) -> dict[str, Any]:
    return {
        "name": name,
        "variants": [
            {"name": "A", "template": "points_expiry", "weight": 50},
            {"name": "B", "template": "points_expiry_countdown", "weight": 50},
        ],
        "metric": "conversion",
    }


def run_campaign(
    stack: Stack, campaign: str, base: int, convert: dict[str, float], opt_out: dict[str, float]
) -> tuple[dict[str, Any], dict[str, dict[str, int]]]:
    """2,000 members over A and B; each variant's members convert and opt out at the given rates
    (the first of them in order, so the counts are exact). Returns the report and what was scripted."""
    phones = [f"139{base + i:08d}" for i in range(2000)]
    with stack.client() as c:
        ids: list[str] = []
        for start in (0, 1000):
            r = c.post(
                "/v1/notify/batch",
                json={
                    "defaults": {
                        "channel": "sms",
                        "brand": BRAND,
                        "params": {"name": "李女士", "points": 1200, "days": 3},
                        "metadata": {"campaign": campaign},
                        "experiment": experiment(f"{campaign}-copy"),
                    },
                    "items": [{"to": {"phone": p}} for p in phones[start : start + 1000]],
                },
            )
            assert r.status_code == 200, r.text
            ids += [x["id"] for x in r.json()["results"]]
        wait_for(
            lambda: int(report_of(c, campaign).get("totals", {}).get("delivered", 0)) == 2000, timeout=120
        )
        variant_of = {i: c.get(f"/v1/notifications/{i}").json()["variant"] for i in ids}
        scripted = {v: {"delivered": 0, "converted": 0, "opted_out": 0, "clicked": 0} for v in ("A", "B")}
        by_variant: dict[str, list[tuple[str, str]]] = {"A": [], "B": []}
        for phone, ntf_id in zip(phones, ids, strict=True):
            by_variant[variant_of[ntf_id]].append((phone, ntf_id))
        for v, members in by_variant.items():
            scripted[v]["delivered"] = len(members)
            converting = members[: round(len(members) * convert[v])]
            leaving = members[len(members) - round(len(members) * opt_out[v]) :]
            for _, ntf_id in converting:
                assert (
                    c.post(
                        "/v1/conversions", json={"type": "redeemed", "notification_id": ntf_id}
                    ).status_code
                    == 200
                )
            for phone, _ in leaving:
                r = httpx.post(
                    f"{stack.sim_url}/replies",
                    json={"from": "+86" + phone, "text": "TD", "brand": BRAND},
                    timeout=10,
                )
                assert r.status_code == 200
            if v == "B":  # the countdown copy carries a link: some tap it
                for phone, _ in members[:100]:
                    assert (
                        httpx.post(f"{stack.sim_url}/taps", json={"to": "+86" + phone}, timeout=10).json()[
                            "status"
                        ]
                        == 302
                    )
                scripted[v]["clicked"] = 100
            scripted[v]["converted"], scripted[v]["opted_out"] = len(converting), len(leaving)

        def settled() -> dict[str, Any] | None:
            got = report_of(c, campaign)
            seen = (
                {v: {k: got["by_variant"][v]["totals"][k] for k in scripted[v]} for v in scripted}
                if got
                else {}
            )
            return got if seen == scripted else None

        final: dict[str, Any] = wait_for(settled, timeout=60)
    return final, scripted


def report_of(c: httpx.Client, campaign: str) -> dict[str, Any]:
    r = c.get(f"/v1/campaigns/{campaign}/report")
    body: dict[str, Any] = r.json() if r.status_code == 200 else {}
    return body


@pytest.mark.slow
@pytest.mark.parametrize(
    ("scenario", "convert", "opt_out", "winner", "guardrail"),
    [
        ("b-better", {"A": 0.10, "B": 0.20}, {"A": 0.005, "B": 0.005}, "B", "ok"),
        ("equal", {"A": 0.15, "B": 0.15}, {"A": 0.005, "B": 0.005}, None, "ok"),
        ("b-costly", {"A": 0.10, "B": 0.20}, {"A": 0.005, "B": 0.02}, None, "worse"),
    ],
)
def test_the_winner_is_called_only_when_it_is_real_and_safe(
    stack_factory: Callable[..., Stack],
    scenario: str,
    convert: dict[str, float],
    opt_out: dict[str, float],
    winner: str | None,
    guardrail: str,
) -> None:
    stack = stack_factory(workers=2)
    base = {"b-better": 10_000_000, "equal": 20_000_000, "b-costly": 30_000_000}[scenario]
    got, scripted = run_campaign(stack, f"ab-{scenario}", base, convert, opt_out)
    assert got["totals"]["accepted"] == got["totals"]["delivered"] == 2000
    assert got["totals"]["converted"] == scripted["A"]["converted"] + scripted["B"]["converted"]
    verdict = got["experiment"]
    assert verdict["metric"] == "conversion" and verdict["winner"] == winner
    assert verdict["guardrails"]["opt_out"] == guardrail
    if winner is not None:
        assert verdict["p_value"] < 0.05 and verdict["lift"] > 0.5
    if scenario == "equal":
        assert verdict["p_value"] > 0.5
    assert {v: got["by_variant"][v]["totals"]["delivered"] for v in ("A", "B")} == {
        v: scripted[v]["delivered"] for v in ("A", "B")
    }
