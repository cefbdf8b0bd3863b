"""A campaign's report: its funnel by channel, variant and series step, from counters (no scan)."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import redis.asyncio as aioredis

from gateway.state import keys
from gateway.state.record import text_of

TOTALS = (
    "accepted",
    "sent",
    "delivered",
    "undelivered",
    "failed",
    "cancelled",
    "clicked",
    "converted",
    "opted_out",
    "complaints",
    "value",
)


def _ratio(part: int, whole: int) -> float | None:
    return round(part / whole, 6) if whole else None


def block(counts: dict[str, int]) -> dict[str, Any]:
    """Totals and rates of one slice of the funnel."""
    totals: dict[str, Any] = {name: counts.get(name, 0) for name in TOTALS}
    totals["suppressed"] = {
        metric.split(":", 1)[1]: n for metric, n in sorted(counts.items()) if metric.startswith("suppressed:")
    }
    delivered, sent = totals["delivered"], totals["sent"]
    rates = {
        "delivery": _ratio(delivered, sent),
        "click": _ratio(totals["clicked"], delivered),
        "conversion": _ratio(totals["converted"], delivered),
        "opt_out": _ratio(totals["opted_out"], delivered),
        "complaint": _ratio(totals["complaints"], delivered),
    }
    return {"totals": totals, "rates": rates}


async def campaign_counts(redis: aioredis.Redis, tenant: str, campaign: str) -> dict[str, dict[str, int]]:
    """dimension -> metric -> count (``all``, ``ch:sms``, ``v:B``, ``st:d30``...)."""
    raw = await redis.hgetall(keys.campaign(tenant, campaign))
    out: dict[str, dict[str, int]] = defaultdict(dict)
    for field, value in raw.items():
        dim, _, metric = text_of(field).partition("|")
        out[dim][metric] = int(text_of(value))
    return dict(out)


def report(
    campaign: str, counts: dict[str, dict[str, int]], experiment: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The answer of ``GET /v1/campaigns/{campaign}/report``."""
    overall = block(counts.get("all", {}))

    def by(prefix: str) -> dict[str, Any]:
        return {dim[len(prefix) :]: block(c) for dim, c in sorted(counts.items()) if dim.startswith(prefix)}

    return {
        "campaign": campaign,
        "totals": overall["totals"],
        "rates": overall["rates"],
        "by_channel": by("ch:"),
        "by_variant": by("v:"),
        "by_step": by("st:"),
        "experiment": experiment,
    }
