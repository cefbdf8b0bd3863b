"""Domain models of the HTTP contract (msgspec Structs)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

from compliance.reasons import ReasonEntry

Channel = Literal["sms", "mms", "push", "email", "voice", "wechat"]
CHANNELS: tuple[Channel, ...] = ("sms", "mms", "push", "email", "voice", "wechat")


class Status(StrEnum):
    """Every status word of a notification (API answers, the stored record, events, metric labels)."""

    QUEUED = "queued"
    SCHEDULED = "scheduled"
    SENDING = "sending"
    SENT = "sent"
    DELIVERED = "delivered"
    UNDELIVERED = "undelivered"
    SUPPRESSED = "suppressed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    REJECTED = "rejected"


FINAL_STATUSES = frozenset(
    {Status.SUPPRESSED, Status.DELIVERED, Status.UNDELIVERED, Status.FAILED, Status.CANCELLED}
)

Category = Literal["marketing", "transactional"]
Scalar = str | int | float | bool | None

ShortStr = Annotated[str, Meta(max_length=256)]
AwareTime = Annotated[datetime, Meta(tz=True)]
Text = Annotated[str, Meta(min_length=1, max_length=10_000)]


# A subscribe message's data key: its type prefix and a number (thing1, character_string2, ...).
WechatKey = Annotated[str, Meta(max_length=64, pattern=r"^[a-z_]+[0-9]+$")]


class Base(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Base of the domain structs: immutable, keyword-only, strict about unknown fields."""


class Recipient(Base, frozen=True):
    """Who gets the message, on which addresses."""

    phone: ShortStr | None = None
    email: ShortStr | None = None
    push_token: Annotated[str, Meta(max_length=4096)] | None = None
    # A WeChat mini-program member's openid (28 characters of letters, digits, - and _ in practice).
    wechat_openid: Annotated[str, Meta(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")] | None = (
        None
    )
    user_id: ShortStr | None = None
    timezone: ShortStr | None = None
    locale: ShortStr | None = None


class WechatValue(Base, frozen=True):
    """One value of a WeChat subscribe message's ``data``."""

    value: Annotated[str, Meta(max_length=1024)]


class Content(Base, frozen=True):
    """Literal content instead of a template."""

    text: Text | None = None
    subject: Annotated[str, Meta(min_length=1, max_length=998)] | None = None
    html: Annotated[str, Meta(min_length=1, max_length=500_000)] | None = None
    title: Annotated[str, Meta(min_length=1, max_length=256)] | None = None
    media: Annotated[list[Annotated[str, Meta(max_length=2048)]], Meta(max_length=10)] = []
    # A WeChat subscribe message: the mini program's template, the page a tap opens, and the values
    # (``{"thing1": {"value": "..."}}``); ``text`` beside them is what an SMS fallback sends.
    template_id: Annotated[str, Meta(min_length=1, max_length=128)] | None = None
    page: Annotated[str, Meta(min_length=1, max_length=1024)] | None = None
    data: Annotated[dict[WechatKey, WechatValue], Meta(max_length=20)] | None = None


class Variant(Base, frozen=True):
    """One arm of an experiment: the template its members get, and its share of them."""

    name: Annotated[str, Meta(min_length=1, max_length=32, pattern=r"^[A-Za-z0-9_-]+$")]
    template: Annotated[str, Meta(min_length=1, max_length=128)]
    weight: Annotated[int, Meta(ge=1, le=10_000)] = 1


class Experiment(Base, frozen=True):
    """An A/B (or A/B/n) copy test: each member always gets the same variant."""

    name: Annotated[str, Meta(min_length=1, max_length=128)]
    variants: Annotated[list[Variant], Meta(min_length=2, max_length=10)]
    metric: Literal["conversion", "click"] = "conversion"


class NotifyRequest(Base, frozen=True):
    """The body of ``POST /v1/notify``."""

    to: Recipient
    channel: Annotated[str, Meta(max_length=32)]
    fallback: Annotated[list[Annotated[str, Meta(max_length=32)]], Meta(max_length=4)] = []
    category: Category | None = None  # a template's own category when absent (marketing for content)
    brand: Annotated[str, Meta(min_length=1, max_length=64)] | None = None
    template: Annotated[str, Meta(min_length=1, max_length=128)] | None = None
    params: Annotated[dict[ShortStr, Scalar], Meta(max_length=100)] = {}
    content: Content | None = None
    send_at: AwareTime | None = None
    expires_at: AwareTime | None = None
    idempotency_key: Annotated[str, Meta(min_length=1, max_length=255)] | None = None
    metadata: Annotated[dict[ShortStr, Scalar], Meta(max_length=50)] = {}
    track_links: bool = False  # every http(s) URL in content becomes the message's own short link
    experiment: Experiment | None = None  # the template comes from the member's variant


class BatchRequest(msgspec.Struct, forbid_unknown_fields=True):
    """The body of ``POST /v1/notify/batch``; items stay raw so one bad item fails alone."""

    items: list[dict[str, Any]]
    defaults: dict[str, Any] = {}


class NotifyResult(msgspec.Struct, kw_only=True):
    """The answer to one notify."""

    id: str | None
    status: Status
    channel: str
    scheduled_for: str | None = None
    segments: int | None = None
    reasons: list[ReasonEntry] = []


class BatchResult(NotifyResult, kw_only=True):
    """One item of a batch answer: its index, and ``rejected`` with reasons when it failed alone."""

    index: int


class BatchResults(msgspec.Struct):
    """The answer to ``POST /v1/notify/batch``."""

    results: list[BatchResult]
