"""Experiments: whether a variant really won (assignment is ``gateway/accept/variants.py``).

The verdict uses SciPy rather than hand-written distributions: Pearson's chi-squared test over the
variants' successes and failures for the metric (conversion or click per delivered message), and a
one-sided two-proportion z-test for the guardrails: a variant whose opt-out or complaint rate is
significantly higher than another's is never the winner, whatever its conversion.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

ALPHA = 0.05
MIN_SAMPLE = 200  # delivered messages per variant before any winner is called (DOMAIN: a few hundred)
METRIC_FIELD = {"conversion": "converted", "click": "clicked"}


def _rate(part: int, whole: int) -> float:
    return part / whole if whole else 0.0


def higher(s1: int, n1: int, s2: int, n2: int) -> float:
    """One-sided p-value that the first proportion is higher than the second (two-proportion z-test)."""
    if not n1 or not n2:
        return 1.0
    pooled = (s1 + s2) / (n1 + n2)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    if se == 0:
        return 1.0
    from scipy.stats import norm  # imported when a report asks: SciPy takes seconds to load

    return float(norm.sf((s1 / n1 - s2 / n2) / se))


def verdict(
    name: str,
    metric: str,
    variants: Sequence[str],
    counts: Mapping[str, Mapping[str, int]],
    min_sample: int = MIN_SAMPLE,
) -> dict[str, Any]:
    """The report's experiment block from each variant's funnel counters."""
    field = METRIC_FIELD.get(metric, "converted")
    stats = {
        v: {
            "delivered": counts.get(v, {}).get("delivered", 0),
            "successes": counts.get(v, {}).get(field, 0),
            "opted_out": counts.get(v, {}).get("opted_out", 0),
            "complaints": counts.get(v, {}).get("complaints", 0),
        }
        for v in variants
    }
    for s in stats.values():
        s["rate"] = round(_rate(s["successes"], s["delivered"]), 6)  # type: ignore[assignment]
    out: dict[str, Any] = {
        "name": name,
        "metric": metric,
        "winner": None,
        "p_value": None,
        "lift": None,
        "guardrails": {"opt_out": "ok", "complaint": "ok"},
        "min_sample": min_sample,
        "variants": stats,
        "reason": None,
    }
    if any(s["delivered"] < min_sample for s in stats.values()):
        out["reason"] = "not_enough_data"
        return out
    table = [[s["successes"], s["delivered"] - s["successes"]] for s in stats.values()]
    try:
        from scipy.stats import chi2_contingency

        p_value = float(chi2_contingency(table, correction=False).pvalue)
    except ValueError:  # a column of zeros (nobody converted anywhere): no difference to test
        p_value = 1.0
    best = max(
        variants, key=lambda v: (_rate(stats[v]["successes"], stats[v]["delivered"]), v == variants[0])
    )
    others = [v for v in variants if v != best]
    baseline = (
        variants[0]
        if best != variants[0]
        else max(others, key=lambda v: _rate(stats[v]["successes"], stats[v]["delivered"]))
    )
    base_rate = _rate(stats[baseline]["successes"], stats[baseline]["delivered"])
    best_rate = _rate(stats[best]["successes"], stats[best]["delivered"])
    out["p_value"] = round(p_value, 6)
    out["lift"] = round(best_rate / base_rate - 1, 6) if base_rate else None
    for guard, key in (("opt_out", "opted_out"), ("complaint", "complaints")):
        worse = any(
            higher(stats[best][key], stats[best]["delivered"], stats[v][key], stats[v]["delivered"]) < ALPHA
            for v in others
        )
        out["guardrails"][guard] = "worse" if worse else "ok"
    if p_value >= ALPHA:
        out["reason"] = "not_significant"
    elif "worse" in out["guardrails"].values():
        out["reason"] = "guardrail"
    else:
        out["winner"] = best
    return out
