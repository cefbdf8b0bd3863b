"""Controllers of verification codes: send one, check one, look one up."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Request, Response, get, post
from litestar.params import FromPath

from gateway.api import views
from gateway.api.deps import json_response, principal, services
from gateway.verify.requests import VerificationCheck, VerificationRequest

STARTED = {
    "id": "ver_01JDQ3V8K6W2Z9X4M7N5P0R1ST",
    "status": "pending",
    "channel": "sms",
    "to": "+86138****5678",
    "brand": "星耀商城",
    "purpose": "redeem",
    "expires_at": "2026-12-01T08:05:00.000+00:00",
    "notification_id": "ntf_01JDQ3V8K6W2Z9X4M7N5P0R1SV",
}


@post(
    "/v1/verifications",
    status_code=201,
    summary="Send a verification code (验证码) by SMS or voice",
    responses={
        **views.ok(dict[str, Any], STARTED, "Sent: check it within its expiry", status=201),
        **views.problems(
            *views.KEYED,
            *views.BODY,
            say={
                429: "Over a limit: verification_rate_limited (this number and brand), "
                "verification_block_limited (a burst to one number block), verification_tenant_limited, "
                "with Retry-After",
                422: "Invalid, or its message could not go (invalid_recipient, unknown_brand, opted_out)",
            },
        ),
    },
)
async def start_verification(
    request: Request[Any, Any, Any],
    data: Annotated[
        VerificationRequest,
        views.body(
            {"to": {"phone": "13812345678"}, "channel": "sms", "brand": "星耀商城", "purpose": "redeem"}
        ),
    ],
) -> Response[bytes]:
    """A new code for the number and purpose replaces the one before (which stops working). The code
    is never in the answer, a log, the audit log or the stored message."""
    who = await principal(request, "notify")
    svc = services(request.app.state)
    return json_response(await svc.verifications.start(who.tenant, data, by=who.key_id), status=201)


@post(
    "/v1/verifications/check",
    status_code=200,
    summary="Check a verification code",
    responses={
        **views.ok(dict[str, Any], {"id": STARTED["id"], "status": "approved"}),
        **views.problems(
            *views.KEYED,
            *views.BODY,
            404,
            say={
                404: "No pending verification (never sent, approved already, or gone): verification_not_found"
            },
        ),
    },
)
async def check_verification(
    request: Request[Any, Any, Any],
    data: Annotated[
        VerificationCheck, views.body({"to": {"phone": "13812345678"}, "purpose": "redeem", "code": "123456"})
    ],
) -> Response[bytes]:
    """``approved`` once for the right code; ``pending`` (with ``attempts_left``) for a wrong one;
    ``max_attempts`` after the last wrong try; ``expired`` after its time or when a newer code replaced it."""
    who = await principal(request, "notify")
    return json_response(await services(request.app.state).verifications.check(who.tenant, data))


@get(
    "/v1/verifications/{verification_id:str}",
    summary="A verification's status (never its code)",
    responses={
        **views.ok(dict[str, Any], {**STARTED, "attempts": 1}),
        **views.problems(*views.KEYED, 404, say={404: "No such verification (verification_not_found)"}),
    },
)
async def get_verification(
    request: Request[Any, Any, Any], verification_id: FromPath[str]
) -> Response[bytes]:
    """Status, channel, masked number, purpose, wrong tries and expiry."""
    who = await principal(request, "notify")
    return json_response(await services(request.app.state).verifications.get(who.tenant, verification_id))


HANDLERS = [start_verification, check_verification, get_verification]
