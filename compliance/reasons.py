"""The one set of reason codes shared by API responses, logs, audit events and metric labels."""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Required, TypedDict


class Reason(StrEnum):
    """Why a notification was held, suppressed, rejected or failed."""

    OPTED_OUT = "opted_out"
    FREQUENCY_CAP = "frequency_cap"
    QUIET_HOURS = "quiet_hours"
    EXPIRED = "expired"
    BANNED_WORDING = "banned_wording"
    INVALID_RECIPIENT = "invalid_recipient"
    UNSUPPORTED_CHANNEL = "unsupported_channel"
    TEMPLATE_NOT_FOUND = "template_not_found"
    MISSING_PARAM = "missing_param"
    CONTENT_TOO_LONG = "content_too_long"
    SIGNATURE_MISMATCH = "signature_mismatch"
    MISSING_SIGNATURE = "missing_signature"
    UNSUBSCRIBE_ON_TRANSACTIONAL = "unsubscribe_on_transactional"
    VALIDATION_ERROR = "validation_error"
    PROVIDER_REJECTED = "provider_rejected"
    RETRIES_EXHAUSTED = "retries_exhausted"
    CANCELLED = "cancelled"
    CATEGORY_MISMATCH = "category_mismatch"
    UNKNOWN_BRAND = "unknown_brand"
    INVALID_CONTENT = "invalid_content"
    # Over a provider's own limit (50 a day per signature, template and number at Alibaba), known
    # before the call: held until there is room, or failed, as the provider's over_quota says.
    PROVIDER_LIMIT = "provider_limit"
    # Reminder series: a step whose time had passed when the series began, one ended by the member's
    # exit event (a redemption), one ended because the series was cancelled.
    PAST = "past"
    EXITED = "exited"
    SERIES_CANCELLED = "series_cancelled"
    # WeChat: the member has no one-time grant left for the template (none recorded, all spent, or
    # the provider answered 43101), so the subscribe message does not go out.
    NO_WECHAT_GRANT = "no_wechat_grant"


class ReasonEntry(TypedDict, total=False):
    """One entry of a ``reasons`` list, as API answers, events and audit rows carry it."""

    code: Required[str]  # a ``Reason`` value
    detail: Required[str]
    terms: list[dict[str, Any]]  # banned_wording: each term with its field and position
    severity: str  # "warning" for wording that warns instead of blocking
    params: list[str]  # missing_param: the names
    scheduled_for: str | None  # quiet_hours: when it goes
    provider_code: str | None  # provider_rejected, retries_exhausted: the provider's own code
    field: str  # a template's field that failed


def reason(code: Reason, detail: str, **extra: Any) -> ReasonEntry:
    """One entry of a ``reasons`` list."""
    entry = ReasonEntry(code=str(code), detail=detail)
    entry.update(extra)  # type: ignore[typeddict-item]  # the keys above
    return entry
