"""The one set of reason codes shared by API responses, logs, audit events and metric labels."""

from __future__ import annotations

from enum import StrEnum
from typing import Any


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


def reason(code: Reason, detail: str, **extra: Any) -> dict[str, Any]:
    """One entry of a ``reasons`` list."""
    return {"code": str(code), "detail": detail, **extra}
