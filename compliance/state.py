"""The state rules: opt-out, monthly frequency cap, quiet hours and expiry, as rule objects.

The content rules (``compliance.content``) judge the text; these judge the moment and the member's
stored state. Each rule is asked the same questions at accept and at dispatch, so both stages decide
alike. The ones that read live state (opt-out, cap) must run inside the Redis script that records or
claims the notification, atomically with it: for those the rule computes everything the script needs
(the scopes to test, the cap key's month and limit, what a suppression says) and the script applies
it. The ones that need only a clock and the member's zone (quiet hours, expiry) decide here.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import NamedTuple, Protocol

from compliance.policy import Rules
from compliance.reasons import Reason, ReasonEntry, reason
from compliance.timing import cap_month, quiet_release


class Moment(NamedTuple):
    """What the timing rules look at: one notification at one time (a tuple: made on every accept)."""

    now: float
    due: float  # when it would go out (send_at, or now)
    zone: str  # the member's IANA zone
    category: str
    expires_at: float | None
    rules: Rules
    channel: str = "sms"  # calls keep stricter hours (the policy's voice_quiet)


class Timing(NamedTuple):
    """A timing rule's verdict: hold until ``release``, or suppress with a reason; None fields = pass."""

    rule: str
    outcome: str  # pass | defer | suppress
    release: float | None = None
    reason: ReasonEntry | None = None


class MemberState(Protocol):
    """The live state the opt-out and cap rules read (Redis, inside a script; a dict in a unit test)."""

    def opted_out(self, scopes: tuple[str, ...]) -> bool:
        """Whether any of the scopes holds an opt-out."""
        ...

    def cap_used(self) -> int:
        """Capped messages the member already had this month."""
        ...


class OptOutRule:
    """A member who opted out of everything, the channel, the brand or the brand on the channel gets nothing."""

    name = "opt_out"
    AT_ACCEPT = "the member opted out of messages from this brand or channel"
    SINCE_ACCEPT = "the member opted out after this message was accepted"

    @staticmethod
    @lru_cache(maxsize=1024)
    def scopes(brand: str, channel: str) -> tuple[str, ...]:
        """The opt-out scopes (``brand|channel``, ``*`` for any) that stop this message."""
        if brand:
            return ("*|*", f"*|{channel}", f"{brand}|*", f"{brand}|{channel}")
        return ("*|*", f"*|{channel}")

    def reason(self, since_accept: bool = False) -> ReasonEntry:
        """What a suppression by this rule says."""
        return reason(Reason.OPTED_OUT, self.SINCE_ACCEPT if since_accept else self.AT_ACCEPT)

    def decide(self, state: MemberState, brand: str, channel: str) -> ReasonEntry | None:
        """The suppression reason when the member opted out, else None (what the scripts do in Lua)."""
        return self.reason() if state.opted_out(self.scopes(brand, channel)) else None


class CapSlot(NamedTuple):
    """Where a capped message counts: the member's month (in their zone), its limit and how long to keep it."""

    month: str
    limit: int
    ttl: int


class FrequencyCapRule:
    """At most ``monthly_cap`` capped (marketing) messages per member and calendar month of their zone."""

    name = "frequency_cap"

    def slot(self, m: Moment) -> CapSlot | None:
        """The month this message counts in, or None when the category is not capped."""
        if m.rules.monthly_cap <= 0 or m.category not in m.rules.cap_categories:
            return None
        month, month_end = cap_month(m.due, m.zone)
        return CapSlot(month, m.rules.monthly_cap, int(month_end - m.now) + 7 * 86_400)

    @staticmethod
    @lru_cache(maxsize=64)
    def reason(limit: int) -> ReasonEntry:
        """What a suppression by this rule says (shared: never mutate it)."""
        return reason(Reason.FREQUENCY_CAP, f"the monthly cap of {limit} messages for this member is reached")

    def decide(self, state: MemberState, slot: CapSlot | None) -> ReasonEntry | None:
        """The suppression reason when the month is full, else None (what the accept script does in Lua)."""
        if slot is None or state.cap_used() < slot.limit:
            return None
        return self.reason(slot.limit)


class QuietHoursRule:
    """Marketing waits for the end of the member's quiet hours, in the member's own zone; a call (any
    category the policy's ``voice_quiet_categories`` names) waits out the voice windows too."""

    name = "quiet_hours"
    PASS = Timing(name, "pass")

    def decide(self, m: Moment) -> Timing:
        """Defer until the quiet hours end, or pass."""
        release = quiet_release(m.due, m.zone, m.category, m.rules, m.channel)
        if release is None:
            return self.PASS
        return self._defer(release)

    @staticmethod
    @lru_cache(maxsize=256)
    def _defer(release: float) -> Timing:
        """The deferral until ``release`` (a night's members share a few: shared, never mutate it)."""
        why = reason(Reason.QUIET_HOURS, "held until the member's quiet hours end")
        return Timing(QuietHoursRule.name, "defer", release, why)


class ExpiryRule:
    """A message that could only go out after its ``expires_at`` is suppressed instead."""

    name = "expiry"
    PASS = Timing(name, "pass")

    def decide(self, m: Moment, goes_at: float, detail: str, *, at_expiry: bool = True) -> Timing:
        """Suppress when ``goes_at`` is past the expiry (or at it, with ``at_expiry``), else pass."""
        if m.expires_at is not None and (m.expires_at <= goes_at if at_expiry else m.expires_at < goes_at):
            return Timing(self.name, "suppress", reason=reason(Reason.EXPIRED, detail))
        return self.PASS


@dataclass(frozen=True)
class StateRules:
    """The state rules in the order they are asked, built once (like ``content_pipeline``)."""

    opt_out: OptOutRule
    frequency_cap: FrequencyCapRule
    quiet_hours: QuietHoursRule
    expiry: ExpiryRule


def state_rules() -> StateRules:
    """The state rules every stage runs."""
    return StateRules(OptOutRule(), FrequencyCapRule(), QuietHoursRule(), ExpiryRule())
