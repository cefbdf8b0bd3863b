"""Experiments: deterministic assignment, and a verdict that only calls real, safe winners."""

from __future__ import annotations

from collections import Counter

from gateway.accept.variants import assign
from gateway.engagement.experiments import verdict
from gateway.models import Experiment, Variant
from gateway.recipients import Members

EXPERIMENT = Experiment(
    name="expiry-copy-2026-12",
    variants=[
        Variant(name="A", template="points_expiry", weight=50),
        Variant(name="B", template="points_expiry_countdown", weight=50),
    ],
)


def test_the_same_member_always_lands_in_the_same_variant() -> None:
    members = Members("a-secret-key")
    phones = [f"+86138{i:08d}" for i in range(10_000)]
    first = [assign("a-secret-key", EXPERIMENT, members.of(p)).name for p in phones]
    second = [assign("a-secret-key", EXPERIMENT, Members("a-secret-key").of(p)).name for p in phones]
    assert first == second
    split = Counter(first)
    assert 4_800 <= split["A"] <= 5_200 and split["A"] + split["B"] == 10_000
    other_key = [assign("another-key", EXPERIMENT, members.of(p)).name for p in phones]
    assert (
        sum(a != b for a, b in zip(first, other_key, strict=True)) > 4_000
    )  # the key decides, not the number
    weighted = Experiment(
        name="w",
        variants=[Variant(name="A", template="t", weight=9), Variant(name="B", template="t", weight=1)],
    )
    assert 850 <= Counter(assign("k", weighted, members.of(p)).name for p in phones[:1000])["A"] <= 950


def counts(delivered: int, converted: int, opted_out: int = 0) -> dict[str, int]:
    return {"delivered": delivered, "converted": converted, "opted_out": opted_out}


def test_a_clear_winner_no_winner_and_the_guardrail() -> None:
    won = verdict("e", "conversion", ["A", "B"], {"A": counts(1000, 100), "B": counts(1000, 158)})
    assert won["winner"] == "B" and won["p_value"] < 0.05 and abs(won["lift"] - 0.58) < 1e-9
    assert won["guardrails"] == {"opt_out": "ok", "complaint": "ok"}
    even = verdict("e", "conversion", ["A", "B"], {"A": counts(1000, 150), "B": counts(1000, 150)})
    assert even["winner"] is None and even["p_value"] == 1.0 and even["reason"] == "not_significant"
    noisy = verdict("e", "conversion", ["A", "B"], {"A": counts(1000, 150), "B": counts(1000, 160)})
    assert noisy["winner"] is None and noisy["p_value"] > 0.05
    costly = verdict("e", "conversion", ["A", "B"], {"A": counts(1000, 100, 5), "B": counts(1000, 200, 20)})
    assert (
        costly["winner"] is None
        and costly["guardrails"]["opt_out"] == "worse"
        and costly["reason"] == "guardrail"
    )
    small = verdict("e", "conversion", ["A", "B"], {"A": counts(150, 10), "B": counts(150, 60)})
    assert small["winner"] is None and small["reason"] == "not_enough_data" and small["p_value"] is None
    nobody = verdict("e", "click", ["A", "B"], {"A": counts(500, 0), "B": counts(500, 0)})
    assert nobody["winner"] is None and nobody["p_value"] == 1.0
