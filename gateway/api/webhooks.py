"""Controllers of ``/v1/webhooks``: a tenant's endpoints, their secrets, test events and delivery logs."""

from __future__ import annotations

import time
from typing import Annotated, Any

import msgspec
from litestar import Request, Response, delete, get, patch, post
from litestar.params import FromPath, FromQuery

from gateway import events
from gateway.api import examples, views
from gateway.api.deps import json_response, principal, services
from gateway.errors import Conflict, NotFound, Unprocessable
from gateway.ids import new_id
from gateway.timeutil import rfc3339
from gateway.webhooks import deliveries
from gateway.webhooks.endpoints import Endpoint, EndpointError, Endpoints
from gateway.webhooks.payloads import Outgoing

SCOPE = "admin"


class NewEndpoint(msgspec.Struct, forbid_unknown_fields=True):
    """``POST /v1/webhooks``."""

    url: Annotated[str, msgspec.Meta(min_length=1, max_length=2048)]
    events: Annotated[list[Annotated[str, msgspec.Meta(max_length=64)]], msgspec.Meta(max_length=32)]
    description: Annotated[str, msgspec.Meta(max_length=500)] = ""
    include_addresses: bool = False


class EndpointChange(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """``PATCH /v1/webhooks/{id}``: only what is given changes."""

    url: Annotated[str, msgspec.Meta(min_length=1, max_length=2048)] | msgspec.UnsetType = msgspec.UNSET
    events: (
        Annotated[list[Annotated[str, msgspec.Meta(max_length=64)]], msgspec.Meta(max_length=32)]
        | msgspec.UnsetType
    ) = msgspec.UNSET
    description: Annotated[str, msgspec.Meta(max_length=500)] | msgspec.UnsetType = msgspec.UNSET
    enabled: bool | msgspec.UnsetType = msgspec.UNSET
    include_addresses: bool | msgspec.UnsetType = msgspec.UNSET


def _store(request: Request[Any, Any, Any]) -> Endpoints:
    svc = services(request.app.state)
    return Endpoints(svc.store.redis, svc.settings.webhook_allow_private)


async def _found(request: Request[Any, Any, Any], tenant: str, endpoint_id: str) -> Endpoint:
    endpoint = await _store(request).get(tenant, endpoint_id)
    if endpoint is None:
        raise NotFound("not_found", f"no webhook endpoint {endpoint_id}")
    return endpoint


def _refused(exc: EndpointError) -> Unprocessable:
    return Unprocessable(exc.code, exc.detail, errors=[{"field": exc.field, "message": exc.detail}])


ENDPOINT = {
    "id": "whk_01JDQ3V8K6W2Z9X4M7N5P0R1ST",
    "url": "https://crm.example.cn/tidings",
    "events": ["notification.delivered", "optout.created", "reply.received"],
    "description": "CRM sync",
    "enabled": True,
    "include_addresses": False,
    "disabled_reason": None,
    "created_at": "2026-12-01T10:00:00+08:00",
    "updated_at": "2026-12-01T10:00:00+08:00",
}
KEYED_404 = {404: "No webhook endpoint with that id for this tenant (not_found)"}


@post(
    "/v1/webhooks",
    status_code=201,
    summary="Create a webhook endpoint (its signing secret is answered once)",
    responses={
        **views.ok(
            views.WebhookCreated,
            {**ENDPOINT, "secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"},
            "Created",
            201,
        ),
        **views.problems(
            *views.KEYED,
            *views.BODY,
            say={422: "Invalid: an unknown event type, a URL that is not http(s), or one inside the network"},
        ),
    },
)
async def create_webhook(
    request: Request[Any, Any, Any],
    data: Annotated[NewEndpoint, views.body({k: ENDPOINT[k] for k in ("url", "events", "description")})],
) -> Response[bytes]:
    """Answered with its ``secret`` (``whsec_...``): keep it, it is not shown again."""
    who = await principal(request, SCOPE)
    try:
        endpoint = await _store(request).create(
            who.tenant,
            url=data.url,
            events_=data.events,
            description=data.description,
            include_addresses=data.include_addresses,
            by=who.key_id,
        )
    except EndpointError as exc:
        raise _refused(exc) from None
    return json_response({**endpoint.view(), "secret": endpoint.secrets[0].secret}, status=201)


@get(
    "/v1/webhooks",
    summary="The tenant's webhook endpoints",
    responses={**views.ok(views.WebhookList, {"webhooks": [ENDPOINT]}), **views.problems(*views.KEYED)},
)
async def list_webhooks(request: Request[Any, Any, Any]) -> Response[bytes]:
    """Oldest first; no secrets."""
    who = await principal(request, SCOPE)
    return json_response({"webhooks": [e.view() for e in await _store(request).all(who.tenant)]})


@get(
    "/v1/webhooks/{endpoint_id:str}",
    summary="One webhook endpoint",
    responses={**views.ok(views.WebhookView, ENDPOINT), **views.problems(*views.KEYED, 404, say=KEYED_404)},
)
async def get_webhook(request: Request[Any, Any, Any], endpoint_id: FromPath[str]) -> Response[bytes]:
    """No secret."""
    who = await principal(request, SCOPE)
    return json_response((await _found(request, who.tenant, endpoint_id)).view())


@patch(
    "/v1/webhooks/{endpoint_id:str}",
    summary="Change an endpoint: url, events, description, enabled, include_addresses",
    responses={
        **views.ok(views.WebhookView, ENDPOINT),
        **views.problems(*views.KEYED, *views.BODY, 404, say=KEYED_404),
    },
)
async def patch_webhook(
    request: Request[Any, Any, Any],
    endpoint_id: FromPath[str],
    data: Annotated[EndpointChange, views.body({"events": ["*"], "include_addresses": True})],
) -> Response[bytes]:
    """Re-enabling an endpoint disabled after failures (or a 410) delivers what comes next."""
    who = await principal(request, SCOPE)
    endpoint = await _found(request, who.tenant, endpoint_id)
    changes = msgspec.structs.asdict(data)
    try:
        updated = await _store(request).update(
            who.tenant, endpoint, {k: v for k, v in changes.items() if v is not msgspec.UNSET}, by=who.key_id
        )
    except EndpointError as exc:
        raise _refused(exc) from None
    return json_response(updated.view())


@delete(
    "/v1/webhooks/{endpoint_id:str}",
    status_code=200,
    summary="Delete an endpoint",
    responses={
        **views.ok(views.WebhookView, {**ENDPOINT, "enabled": False}),
        **views.problems(*views.KEYED, 404, say=KEYED_404),
    },
)
async def delete_webhook(request: Request[Any, Any, Any], endpoint_id: FromPath[str]) -> Response[bytes]:
    """What it was; deliveries still waiting for it are dropped."""
    who = await principal(request, SCOPE)
    endpoint = await _found(request, who.tenant, endpoint_id)
    await _store(request).delete(who.tenant, endpoint, by=who.key_id)
    endpoint.enabled = False
    return json_response(endpoint.view())


@post(
    "/v1/webhooks/{endpoint_id:str}/rotate-secret",
    status_code=200,
    summary="A new signing secret; the old one keeps signing for 24 hours",
    responses={
        **views.ok(
            views.RotatedSecret,
            {
                "id": ENDPOINT["id"],
                "secret": "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD",
                "previous_valid_until": "2026-12-02T10:00:00+08:00",
            },
        ),
        **views.problems(*views.KEYED, 404, say=KEYED_404),
    },
)
async def rotate_webhook_secret(
    request: Request[Any, Any, Any], endpoint_id: FromPath[str]
) -> Response[bytes]:
    """Deliveries carry a signature by each secret in use, so receivers can switch at leisure."""
    who = await principal(request, SCOPE)
    endpoint = await _found(request, who.tenant, endpoint_id)
    secret = await _store(request).rotate(who.tenant, endpoint, by=who.key_id)
    until = max((s.expires_at or 0.0 for s in endpoint.secrets), default=0.0)
    return json_response(
        {"id": endpoint.id, "secret": secret, "previous_valid_until": rfc3339(until) if until else None}
    )


@post(
    "/v1/webhooks/{endpoint_id:str}/test",
    status_code=202,
    summary="Send the endpoint a signed webhook.test event",
    responses={
        **views.ok(
            views.TestQueued,
            {"delivery_id": "dlv_01JDQ3V8K6W2Z9X4M7N5P0R1ST", "event_id": "evt_01JDQ3V8K6W2Z9X4M7N5P0R1SV"},
            "Queued",
            202,
        ),
        **views.problems(*views.KEYED, 404, say=KEYED_404),
    },
)
async def test_webhook(request: Request[Any, Any, Any], endpoint_id: FromPath[str]) -> Response[bytes]:
    """Goes the way every delivery goes (signed, retried, in the delivery log), whatever it subscribes to."""
    who = await principal(request, SCOPE)
    endpoint = await _found(request, who.tenant, endpoint_id)
    svc = services(request.app.state)
    now = time.time()
    event = Outgoing(
        id=new_id("evt"),
        type="webhook.test",
        created_at=events.at(now),
        member="",
        notification_id="",
        data={"endpoint": endpoint.id, "message": "Tidings 测试事件: this endpoint receives signed events"},
    )
    async with svc.store.redis.pipeline(transaction=True) as pipe:
        delivery = deliveries.queue_delivery(
            pipe, who.tenant, endpoint, event, now, svc.settings.webhook_lanes
        )
        await pipe.execute()
    return json_response({"delivery_id": delivery, "event_id": event.id}, status=202)


@get(
    "/v1/webhooks/{endpoint_id:str}/deliveries",
    summary="The endpoint's recent deliveries, newest first (attempts, answer, latency, next try)",
    responses={
        **views.ok(views.DeliveryList, {"deliveries": [examples.DELIVERY]}),
        **views.problems(*views.KEYED, 404, 422, say={**KEYED_404, 422: "limit is not 1 to 1000"}),
    },
)
async def webhook_deliveries(
    request: Request[Any, Any, Any], endpoint_id: FromPath[str], limit: FromQuery[int] = 100
) -> Response[bytes]:
    """Kept a week, at most the last 1,000."""
    who = await principal(request, SCOPE)
    if not 1 <= limit <= 1000:
        raise Unprocessable("validation_error", "limit must be between 1 and 1000")
    await _found(request, who.tenant, endpoint_id)
    found = await deliveries.recent(services(request.app.state).store.redis, who.tenant, endpoint_id, limit)
    return json_response({"deliveries": found})


@post(
    "/v1/webhooks/{endpoint_id:str}/deliveries/{delivery_id:str}/retry",
    status_code=202,
    summary="Send a failed delivery again",
    responses={
        **views.ok(views.DeliveryView, {**examples.DELIVERY, "status": "pending"}, "Queued again", 202),
        **views.problems(
            *views.KEYED,
            404,
            409,
            say={
                404: "No such endpoint or delivery (not_found)",
                409: "The delivery has not failed (not_retryable)",
            },
            show={
                409: examples.problem(409, "not_retryable", "Conflict", "the delivery is pending, not failed")
            },
        ),
    },
)
async def retry_webhook_delivery(
    request: Request[Any, Any, Any], endpoint_id: FromPath[str], delivery_id: FromPath[str]
) -> Response[bytes]:
    """Behind what the lane holds now; attempts start again."""
    who = await principal(request, SCOPE)
    await _found(request, who.tenant, endpoint_id)
    redis = services(request.app.state).store.redis
    record = await deliveries.get(redis, who.tenant, delivery_id)
    if record is None or record.get("endpoint") != endpoint_id:
        raise NotFound("not_found", f"no delivery {delivery_id} for this endpoint")
    if record.get("status") != "failed":
        raise Conflict("not_retryable", f"the delivery is {record.get('status')}, not failed")
    await deliveries.retry(redis, who.tenant, record)
    return json_response(deliveries.view({**record, "status": "pending", "attempts": "0"}), status=202)


HANDLERS = [
    create_webhook,
    list_webhooks,
    get_webhook,
    patch_webhook,
    delete_webhook,
    rotate_webhook_secret,
    test_webhook,
    webhook_deliveries,
    retry_webhook_delivery,
]
