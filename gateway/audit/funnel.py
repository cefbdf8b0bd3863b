"""Campaign funnels, counted as the audit events are stored.

An audit entry of a campaign's notification carries the campaign's dimensions (field ``k``: campaign,
channel, variant, series step). Each event counts once, in the same script that takes the entry off
the stream (``lua/handoff.lua``), so a report reads counters instead of scanning a million
notifications, and a consumer that crashes and reads entries again never counts them twice.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any


def metrics_of(event: Mapping[str, Any]) -> list[tuple[str, int]]:
    """What one event adds to its campaign's funnel: (metric, amount) pairs."""
    kind = event.get("type")
    if kind == "accepted":
        return [("accepted", 1)]
    if kind == "suppressed":
        return [(f"suppressed:{event.get('reason') or 'other'}", 1), ("suppressed", 1)]
    if kind == "sent":
        return [("sent", 1)]
    if kind == "receipt" and event.get("status") in ("delivered", "undelivered"):
        return [(str(event["status"]), 1)]
    if kind == "failed":
        return [("failed", 1)]
    if kind == "cancelled":
        return [("cancelled", 1)]
    if kind == "click" and event.get("first"):
        return [("clicked", 1)]
    if kind == "conversion" and event.get("first"):
        value = event.get("value")
        out = [("converted", 1)]
        if isinstance(value, int | float) and value > 0:
            out.append(("value", int(value)))
        return out
    if kind == "complaint":
        return [("complaints", 1)]
    if kind == "unsubscribed":
        return [("opted_out", 1)]
    return []


def dimensions(k: str) -> tuple[str, list[str]]:
    """(campaign, the dimensions it counts in) of an entry's ``k``."""
    campaign, channel, variant, step = [*k.split("\t"), "", "", ""][:4]
    dims = ["all"]
    if channel:
        dims.append(f"ch:{channel}")
    if variant:
        dims.append(f"v:{variant}")
    if step:
        dims.append(f"st:{step}")
    return campaign, dims


def count(
    entries: Iterable[tuple[Mapping[str, str], Iterable[tuple[int, Mapping[str, Any]]]]],
) -> dict[str, dict[str, int]]:
    """campaign -> {``dim|metric``: amount} for the entries of one tenant, each given with its
    decoded events (``stream.decode_events``)."""
    out: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for fields, events in entries:
        k = fields.get("k")
        if not k:
            continue
        campaign, dims = dimensions(k)
        for _, event in events:
            for metric, amount in metrics_of(event):
                for dim in dims:
                    out[campaign][f"{dim}|{metric}"] += amount
    return {c: dict(v) for c, v in out.items()}
