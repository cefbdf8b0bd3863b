"""Timeline and audit events as one tagged union of msgspec Structs, encoded by msgspec.

A notification's timeline (``GET /v1/notifications/{id}``) and the audit stream hold the same events.
Each is a Struct whose tag is its ``type``; fields left ``None`` are not written, so an event carries
only what it knows. ``encode`` is the one way an event becomes JSON.
"""

from __future__ import annotations

from typing import Any

import msgspec

from compliance.reasons import ReasonEntry
from gateway.models import Status
from gateway.timeutil import rfc3339, system_clock


class Event(msgspec.Struct, tag_field="type", kw_only=True, omit_defaults=True, frozen=True):
    """Base of every event: when it happened (RFC 3339)."""

    at: str


class Decision(msgspec.Struct, frozen=True):
    """One rule's verdict at accept. A content rule's reason is written even when null; a timing rule
    (expiry, quiet hours) has no reason field at all (UNSET)."""

    rule: str
    outcome: str
    reason: str | msgspec.UnsetType | None = msgspec.UNSET


# -- a notification's timeline ------------------------------------------------------------------
class Accepted(Event, tag="accepted", frozen=True):
    """The notify was recorded with this status."""

    status: Status
    channel: str
    category: str
    segments: int | None = None


class Compliance(Event, tag="compliance", frozen=True):
    """What the rules said at a stage (accept: every decision; dispatch: the one that acted)."""

    stage: str
    decisions: list[Decision] | msgspec.Raw | None = None  # Raw: encoded once, reused
    rule: str | None = None
    outcome: str | None = None
    reason: str | None = None
    scheduled_for: str | None = None


class Scheduled(Event, tag="scheduled", frozen=True):
    """Held until a time (send_at or quiet hours)."""

    scheduled_for: str | None = None
    reason: str | None = None


class Deferred(Event, tag="deferred", frozen=True):
    """Not attempted now (every provider at its rate limit); no attempt spent."""

    reason: str
    detail: str | None = None


class Attempt(Event, tag="attempt", frozen=True):
    """One call to a provider and what it answered."""

    attempt: int
    provider: str
    outcome: str
    provider_message_id: str | None = None
    error_code: str | None = None
    error_detail: str | None = None
    duration_ms: float | None = None


class Sent(Event, tag="sent", frozen=True):
    """A provider took the message."""

    provider: str
    provider_message_id: str | None = None


class Receipt(Event, tag="receipt", frozen=True):
    """The provider's delivery report."""

    status: Status
    provider: str
    provider_code: str | None = None
    provider_message_id: str | None = None
    reported_at: str | None = None


class Suppressed(Event, tag="suppressed", frozen=True):
    """Never sent, on purpose (opt-out, cap, expiry)."""

    reason: str
    detail: str | None = None
    provider_code: str | None = None


class Failed(Event, tag="failed", frozen=True):
    """Given up (a permanent refusal or retries exhausted)."""

    reason: str
    detail: str | None = None
    provider_code: str | None = None


class Cancelled(Event, tag="cancelled", frozen=True):
    """Cancelled before it was handed to a provider: by an API key, or as a step of a series that ended
    (``reason`` exited or series_cancelled)."""

    by: str | None = None
    reason: str | None = None


class Replayed(Event, tag="replayed", frozen=True):
    """Put back in the queue from the dead-letter list."""

    source: str


class Fallback(Event, tag="fallback", frozen=True):
    """Tried again on the next channel of its fallback list, as a new notification (or why not)."""

    channel: str
    id: str | None = None
    status: str | None = None
    reasons: list[dict[str, Any]] | None = None
    http_status: int | None = None


# -- tenant-level audit events ---------------------------------------------------------------------
class RejectedRequest(Event, tag="rejected", frozen=True):
    """A notify refused with 422 (never stored as a notification)."""

    channel: str | None = None
    category: str | None = None
    brand: str | None = None
    reasons: list[ReasonEntry] | None = None


class OptedOut(Event, tag="opt_out", frozen=True):
    """A member opted out of a brand/channel scope (None: every brand, every channel)."""

    source: str
    brand: str | None = None
    channel: str | None = None
    reason: str | None = None
    by: str | None = None


class OptedIn(Event, tag="opt_in", frozen=True):
    """A member opted back in, with the consent evidence (None: every brand, every channel)."""

    consent_evidence: str
    brand: str | None = None
    channel: str | None = None
    by: str | None = None


class ReplyReceived(Event, tag="reply", frozen=True):
    """A member's reply (MO) came in: what it said, what it asked for, what was done."""

    text: str
    intent: str  # opt_out, opt_in, other
    action: str  # opted_out, already_opted_out, opted_in, none
    provider: str
    brand: str | None = None


class WebhookChanged(Event, tag="webhook_changed", frozen=True):
    """A webhook endpoint was created, changed, rotated, disabled or deleted (what it receives and
    whether it receives addresses: an auditor sees who gets the opt-out list)."""

    endpoint: str
    change: str
    url: str
    events: list[str]
    enabled: bool
    include_addresses: bool
    reason: str | None = None
    by: str | None = None


class TemplateChanged(Event, tag="template_changed", frozen=True):
    """A tenant template was created or replaced."""

    name: str
    sha256: str
    by: str | None = None


class ApiKeyCreated(Event, tag="api_key_created", frozen=True):
    """An API key was created (its hash only)."""

    key_id: str
    scopes: list[str]
    name: str | None = None


class ApiKeyRevoked(Event, tag="api_key_revoked", frozen=True):
    """An API key was revoked: it and every console session signed in with it stop working."""

    key_id: str
    name: str | None = None


class WechatGranted(Event, tag="wechat_grant", frozen=True):
    """One-time WeChat subscribe grants a member gave were recorded (the member and openid, masked,
    are the audit row's)."""

    template_id: str
    count: int
    by: str | None = None


class OptOutsExported(Event, tag="optouts_exported", frozen=True):
    """The tenant's opt-out list was exported: with full addresses, or masked."""

    include_addresses: bool
    via: str  # "api" or "cli"
    by: str | None = None


class OptOutsReconciled(Event, tag="optouts_reconciled", frozen=True):
    """``tidings optouts reconcile`` wrote back opt-outs the audit log holds and Redis lacked (no
    ``opt_out`` event of their own: the log already has one each); the counts of the run."""

    events_read: int
    members: int
    restored: int
    already_present: int
    only_in_redis: int
    conflicts: int
    by: str | None = None


class ConsoleAction(Event, tag="console", frozen=True):
    """Something done in the web console, naming the API key it was signed in with: signing in and
    out, looking a member up, verifying or exporting the audit log, replaying a dead letter."""

    action: str
    by: str
    target: str | None = None
    detail: str | None = None


class Clicked(Event, tag="click", frozen=True):
    """A person opened one of the message's tracked links (robots, HEAD requests and repeats within
    seconds are not events; the link keeps their counts). ``first``: the message's first click."""

    url: str
    first: bool


class Converted(Event, tag="conversion", frozen=True):
    """The member did what the message asked (redeemed), attributed to this notification ``by`` its
    id, the exclusive code it carried, or as the member's latest message of the campaign."""

    kind: str
    by: str
    first: bool
    value: float | None = None
    occurred_at: str | None = None
    code: str | None = None


class Complained(Event, tag="complaint", frozen=True):
    """A complaint about a message (from a carrier, the 12321 centre, customer service)."""

    source: str
    brand: str | None = None
    occurred_at: str | None = None
    opted_out: bool = False


class Unsubscribed(Event, tag="unsubscribed", frozen=True):
    """The member opted out in answer to this message (the opt-out itself is a tenant event)."""

    source: str
    brand: str | None = None


class SeriesChanged(Event, tag="series", frozen=True):
    """A reminder series began, a step of it was released (or skipped), or it ended.

    ``change``: started | step | params | completed | exited | cancelled. A step change names the step,
    its status (sent, suppressed, skipped, cancelled), the notification it became and the reasons.
    """

    series_id: str
    change: str
    definition: str | None = None
    step: str | None = None
    status: str | None = None
    notification_id: str | None = None
    reasons: list[ReasonEntry] | None = None
    exit_type: str | None = None
    by: str | None = None


class VerificationChanged(Event, tag="verification", frozen=True):
    """A verification code was sent (``created``), checked (``approved``, ``failed_attempt``,
    ``max_attempts``), ran out (``expired``) or was withdrawn because its message could not go
    (``cancelled``). Never the code."""

    verification_id: str
    change: str
    channel: str | None = None
    brand: str | None = None
    purpose: str | None = None
    attempts: int | None = None
    expires_at: str | None = None
    reason: str | None = None
    by: str | None = None


AnyEvent = (
    Accepted
    | Compliance
    | Scheduled
    | Deferred
    | Attempt
    | Sent
    | Receipt
    | Suppressed
    | Failed
    | Cancelled
    | Replayed
    | Fallback
    | RejectedRequest
    | OptedOut
    | OptedIn
    | ReplyReceived
    | WebhookChanged
    | TemplateChanged
    | ApiKeyCreated
    | ApiKeyRevoked
    | OptOutsExported
    | OptOutsReconciled
    | WechatGranted
    | ConsoleAction
    | SeriesChanged
    | Clicked
    | Converted
    | Complained
    | Unsubscribed
    | VerificationChanged
)

_encoder = msgspec.json.Encoder()


def encode(ev: Event) -> str:
    """An event as one line of JSON (the form the timeline lists and the audit stream hold)."""
    return _encoder.encode(ev).decode()


def at(epoch: float | None = None) -> str:
    """An event time: now, or the given epoch, in RFC 3339."""
    return rfc3339(system_clock() if epoch is None else epoch) or ""
