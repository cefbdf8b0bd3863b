"""Controllers of engagement: conversions, complaints and campaign reports."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Request, Response, get, post
from litestar.params import FromPath

from gateway.api import views
from gateway.api.deps import json_response, principal, services
from gateway.engagement.outcomes import ComplaintRequest, ConversionRequest
from gateway.engagement.report import campaign_counts, report
from gateway.errors import NotFound

REPORT = {
    "campaign": "2026-12-expiry",
    "totals": {
        "accepted": 2000,
        "sent": 1990,
        "delivered": 1960,
        "undelivered": 30,
        "failed": 0,
        "cancelled": 0,
        "clicked": 610,
        "converted": 301,
        "opted_out": 2,
        "complaints": 0,
        "value": 6020000,
        "suppressed": {"opted_out": 6, "frequency_cap": 4},
    },
    "rates": {
        "delivery": 0.984925,
        "click": 0.311224,
        "conversion": 0.153571,
        "opt_out": 0.00102,
        "complaint": 0.0,
    },
    "by_channel": {},
    "by_variant": {},
    "by_step": {},
    "experiment": None,
}


@post(
    "/v1/conversions",
    status_code=200,
    summary="A conversion (a redemption), attributed to the message that led to it",
    responses={
        **views.ok(
            dict[str, Any],
            {"notification_id": "ntf_01JDQ3V8K6W2Z9X4M7N5P0R1ST", "attributed_by": "code", "first": True},
        ),
        **views.problems(
            *views.KEYED, *views.BODY, say={422: "Invalid, or nothing to attribute it to (not_attributable)"}
        ),
    },
)
async def record_conversion(
    request: Request[Any, Any, Any],
    data: Annotated[ConversionRequest, views.body({"type": "redeemed", "value": 20000, "code": "XY2026"})],
) -> Response[bytes]:
    """By ``notification_id``, by an exclusive ``code`` the message carried, or by ``to`` + ``campaign``
    (the member's latest delivered message of the campaign in the attribution window)."""
    who = await principal(request, "notify")
    return json_response(await services(request.app.state).outcomes.convert(who.tenant, data))


@post(
    "/v1/complaints",
    status_code=200,
    summary="A complaint about a message (carrier, 12321, customer service)",
    responses={
        **views.ok(dict[str, Any], {"recorded": True, "notification_id": None, "opted_out": True}),
        **views.problems(
            *views.KEYED, *views.BODY, 404, say={404: "No notification with that id (not_found)"}
        ),
    },
)
async def record_complaint(
    request: Request[Any, Any, Any],
    data: Annotated[
        ComplaintRequest,
        views.body({"to": {"phone": "13812345678"}, "brand": "星耀商城", "source": "carrier"}),
    ],
) -> Response[bytes]:
    """Audited, on the message's timeline when it names one, and the member is opted out of the brand."""
    who = await principal(request, "notify")
    return json_response(await services(request.app.state).outcomes.complain(who.tenant, data, by=who.key_id))


@get(
    "/v1/campaigns/{campaign:str}/report",
    summary="A campaign's funnel by channel, variant and series step",
    responses={
        **views.ok(dict[str, Any], REPORT),
        **views.problems(*views.KEYED, 404, say={404: "No events for that campaign (not_found)"}),
    },
)
async def campaign_report(request: Request[Any, Any, Any], campaign: FromPath[str]) -> Response[bytes]:
    """A campaign is ``metadata.campaign``; its counters are kept as its events are stored."""
    who = await principal(request, "audit:read")
    counts = await campaign_counts(services(request.app.state).store.redis, who.tenant, campaign)
    if not counts:
        raise NotFound("not_found", f"no events for campaign {campaign!r}")
    return json_response(report(campaign, counts))


HANDLERS = [record_conversion, record_complaint, campaign_report]
