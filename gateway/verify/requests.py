"""The bodies of the verification endpoints (msgspec Structs)."""

from __future__ import annotations

from typing import Annotated, Literal

from msgspec import Meta

from gateway.models import Base, ShortStr

Purpose = Annotated[str, Meta(min_length=1, max_length=32, pattern=r"^[a-z0-9][a-z0-9_.-]*$")]


class VerificationTo(Base, frozen=True):
    """The number a code goes to (any form ``phonenumbers`` parses, default region CN)."""

    phone: ShortStr


class VerificationRequest(Base, frozen=True):
    """The body of ``POST /v1/verifications``."""

    to: VerificationTo
    brand: Annotated[str, Meta(min_length=1, max_length=64)]
    channel: Literal["sms", "voice"] = "sms"
    purpose: Purpose = "verify"
    locale: ShortStr | None = None


class VerificationCheck(Base, frozen=True):
    """The body of ``POST /v1/verifications/check``: the verification by ``id``, or by ``to`` and
    ``purpose`` (the member's latest for that purpose)."""

    code: Annotated[str, Meta(min_length=1, max_length=16)]
    id: Annotated[str, Meta(min_length=5, max_length=64, pattern=r"^ver_[0-9A-Z]+$")] | None = None
    to: VerificationTo | None = None
    purpose: Purpose = "verify"
