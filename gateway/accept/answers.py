"""What the accept pipeline hands back: rejections, answers, and a request prepared for the accept script."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from compliance.reasons import ReasonEntry
from gateway.errors import TooManyRequests
from gateway.models import NotifyResult, Status


@dataclass(slots=True)
class Answer:
    """HTTP status, body and whether it is a replay."""

    status: int
    body: dict[str, Any] | NotifyResult
    replayed: bool = False


@dataclass(slots=True)
class StateArgs:
    """Inputs of the accept script's state rules."""

    optout_key: str = ""
    scopes: tuple[str, ...] = ()
    cap_key: str = ""
    cap_limit: int = 0
    cap_ttl: int = 0


@dataclass(slots=True)
class Prepared:
    """A notify request turned into a record, ready for the accept script."""

    tenant: str
    record: dict[str, str]
    doc: bytes
    result: NotifyResult
    lease_score: float | None
    final: bool
    first_event: str
    idem_key: str | None
    fingerprint: str
    scheduled_for: float | None = None
    extra_events: list[str] = field(default_factory=list)
    accepted_at: str = ""
    state: StateArgs = field(default_factory=StateArgs)
    category: str = "marketing"
    links: list[tuple[str, str]] = field(default_factory=list)  # tracked links: (code, target)
    attribution: tuple[str, str] = ("", "")  # the member's campaign list and the exclusive code's key

    def suppress(self, why: ReasonEntry) -> None:
        """The accept script suppressed it (opt-out or cap) for this reason: the answer says so."""
        self.result.status = Status.SUPPRESSED
        self.result.scheduled_for = None
        self.result.reasons = [why]
        self.scheduled_for = None

    @property
    def http_status(self) -> int:
        """202 for queued/scheduled, 200 for suppressed."""
        return 200 if self.result.status is Status.SUPPRESSED else 202


def held_full(p: Prepared) -> TooManyRequests:
    return TooManyRequests(
        "too_many_scheduled",
        f"this tenant already holds the most scheduled {p.record['channel']} notifications allowed; "
        "retry later or send them closer to their time",
        headers={"Retry-After": "60"},
    )
