"""Controllers of ``/v1/notifications``: look a notification up, cancel it."""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, get, post
from litestar.params import FromPath

from gateway import events, metrics
from gateway.api import examples, views
from gateway.api.deps import json_response, principal, services
from gateway.errors import Conflict, NotFound
from gateway.models import Status
from gateway.recipients import mask_address
from gateway.state.record import Notification
from gateway.timeutil import rfc3339


@get(
    "/v1/notifications/{ntf_id:str}",
    summary="A notification and its lifecycle",
    responses={
        **views.ok(views.NotificationView, examples.NOTIFICATION),
        **views.problems(
            *views.KEYED, 404, say={404: "No notification with that id for this tenant (not_found)"}
        ),
    },
)
async def get_notification(request: Request[Any, Any, Any], ntf_id: FromPath[str]) -> Response[bytes]:
    """The notification with its events and attempts."""
    who = await principal(request, "notify")
    found = await services(request.app.state).store.get(who.tenant, ntf_id) if _valid_id(ntf_id) else None
    if found is None:
        raise NotFound("not_found", f"no notification {ntf_id}")
    record, events = found
    return json_response(notification_view(record, events))


@post(
    "/v1/notifications/{ntf_id:str}/cancel",
    status_code=200,
    summary="Cancel a queued or scheduled notification",
    responses={
        **views.ok(views.NotificationView, {**examples.NOTIFICATION, "status": "cancelled"}),
        **views.problems(
            *views.KEYED,
            404,
            409,
            say={
                404: "No notification with that id for this tenant (not_found)",
                409: "Already handed to a provider or finished (not_cancellable)",
            },
            show={
                409: examples.problem(409, "not_cancellable", "Conflict", "the notification is already sent")
            },
        ),
    },
)
async def cancel_notification(request: Request[Any, Any, Any], ntf_id: FromPath[str]) -> Response[bytes]:
    """Cancel before it is handed to a provider; 409 afterwards."""
    who = await principal(request, "notify")
    svc = services(request.app.state)
    if not _valid_id(ntf_id):
        raise NotFound("not_found", f"no notification {ntf_id}")
    verdict = await svc.store.cancel(
        who.tenant, ntf_id, events.encode(events.Cancelled(at=events.at(), by=who.key_id))
    )
    if verdict == "unknown":
        raise NotFound("not_found", f"no notification {ntf_id}")
    if verdict != "ok":
        raise Conflict(
            "not_cancellable",
            f"notification is {verdict}; only queued or scheduled ones can be cancelled",
            current_status=verdict,
        )
    found = await svc.store.get(who.tenant, ntf_id)
    assert found is not None
    channel = found[0].channel
    metrics.NOTIFICATIONS_BY.inc(channel, Status.CANCELLED)
    return json_response(notification_view(*found))


def _valid_id(ntf_id: str) -> bool:
    return ntf_id.startswith("ntf_") and len(ntf_id) == 30 and ntf_id[4:].isalnum()


def notification_view(r: Notification, events: list[dict[str, Any]]) -> dict[str, Any]:
    """The public shape of a notification: addresses masked, times RFC 3339."""
    to: dict[str, Any] = {"user_id": r.user_id or None, "timezone": r.timezone or None}
    if r.channel in ("sms", "mms", "voice"):
        to["phone"] = mask_address(r.address)
    elif r.channel == "email":
        to["email"] = mask_address(r.address)
    elif r.channel == "wechat":
        to["wechat_openid"] = mask_address(r.address, "wechat")
    else:
        to["push_token"] = mask_address(r.address, "push")
    return {
        "id": r.id,
        "status": r.status,
        "channel": r.channel,
        "category": r.category,
        "to": to,
        "brand": r.brand or None,
        "template": r.template or None,
        "rendered": r.rendered,
        "segments": r.segments,
        "encoding": r.encoding or None,
        "scheduled_for": rfc3339(r.not_before) if r.status == Status.SCHEDULED else None,
        "send_at": rfc3339(r.send_at),
        "expires_at": rfc3339(r.expires_at),
        "created_at": rfc3339(r.created_at),
        "updated_at": rfc3339(r.updated_at),
        "provider": r.provider or None,
        "provider_message_id": r.provider_message_id or None,
        "error_code": r.error_code or None,
        "reasons": r.reasons,
        "fallback": r.fallback,
        "metadata": r.metadata,
        "idempotency_key": r.idempotency_key or None,
        "attempts": [e for e in events if e.get("type") == "attempt"],
        "events": events,
        "experiment": r.experiment or None,
        "variant": r.variant or None,
    }


HANDLERS = [get_notification, cancel_notification]
