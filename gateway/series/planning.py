"""Planning a series: each step's due time in the member's zone, and the params the gateway adds."""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from datetime import datetime

import msgspec

from compliance.policy import Rules
from compliance.reasons import Reason, ReasonEntry, reason
from compliance.timing import best_window, quiet_release, zone
from gateway.series.model import SeriesRequest
from gateway.timeutil import rfc3339
from templates.series import SeriesDefinition

_encode = msgspec.json.Encoder()
# Params the gateway supplies to every step: the local date the points clear, and the days left then.
AUTO_PARAMS = ("expires_on", "days_left")
PAST_GRACE = 60.0  # a step due this little before the start still goes (clocks apart, slow requests)


def fingerprint(req: SeriesRequest) -> str:
    """What makes two starts with the same key "the same body"."""
    return hashlib.sha256(_encode.encode(req)).hexdigest()


def expires_on(anchor: float, tz: str) -> str:
    """The anchor as the member reads it: ``12月31日``."""
    local = datetime.fromtimestamp(anchor, zone(tz))
    return f"{local.month}月{local.day}日"


def days_left(anchor: float, now: float) -> int:
    """Whole days from now to the anchor, rounded up (a step 7 days before says 7)."""
    return max(1, math.ceil((anchor - now) / 86_400 - 1e-9))


@dataclass
class Planned:
    """One step of a new series: when it is due (or why it is skipped)."""

    due: float
    status: str
    reasons: list[ReasonEntry]


def plan(definition: SeriesDefinition, anchor: float, now: float, tz: str, rules: Rules) -> list[Planned]:
    """Each step's due time, or why it is skipped: its time had passed (``past``), or quiet hours
    would hold it past the anchor (``expired``). ``best`` steps move into the member's next best
    window when that still lands before the anchor."""
    out = []
    for step in definition.steps:
        due = anchor + step.offset
        if step.window == "best":
            placed = best_window(due, tz, rules)
            if placed < anchor:
                due = placed
        if due < now - PAST_GRACE:
            out.append(
                Planned(
                    due,
                    "skipped",
                    [
                        reason(
                            Reason.PAST,
                            f"the step's time ({rfc3339(due)}) had passed when the series began",
                        )
                    ],
                )
            )
            continue
        due = max(due, now)
        held = quiet_release(due, tz, definition.category, rules, step.channel)
        if held is not None and held >= anchor:
            out.append(
                Planned(
                    due,
                    "skipped",
                    [reason(Reason.EXPIRED, "quiet hours would hold the step past the anchor")],
                )
            )
            continue
        out.append(Planned(due, "pending", []))
    return out
