"""Members' replies (MO) from providers: ``POST /v1/inbound/{provider}/replies``; an unsubscribe
reply opts the member out, a resubscribe reply (where the tenant allows it) opts them back in."""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, post
from litestar.params import FromPath

from compliance.replies import ReplyKind, classify
from gateway import events
from gateway.api import views
from gateway.api.deps import services
from gateway.api.inbound import adapter_for, answer, proven, refused
from gateway.errors import InvalidRecipient
from gateway.recipients import parse_phone


@post(
    "/v1/inbound/{provider:str}/replies",
    status_code=200,
    summary="Member replies (MO) from a provider",
    responses=views.callback_answers(),
)
async def replies(request: Request[Any, Any, Any], provider: FromPath[str]) -> Response[bytes]:
    """Each provider's own format and proof of origin; an unsubscribe reply opts the member out."""
    adapter = adapter_for(provider, "replies")
    callback, tenant = await proven(request, provider, adapter)
    with refused():
        found = adapter.parse_replies(callback)
    # A signed reply names its tenant; one naming none (the simulator's reply to nothing it
    # delivered) belongs to the development tenant: the simulator is the dev provider.
    dev_tenant = services(request.app.state).settings.dev_tenant
    outcomes = [
        await _apply(
            request, tenant or r.tenant or dev_tenant, r.sender, r.text, r.brand, provider, r.notification_id
        )
        for r in found
    ]
    return answer(adapter.replies_ack(outcomes))


async def _apply(
    request: Request[Any, Any, Any],
    tenant: str,
    sender: str,
    text: str,
    brand: str | None,
    provider: str,
    ntf_id: str | None = None,
) -> dict[str, str]:
    """Classify one reply, act on it and record it; idempotent (the same reply twice is one opt-out)."""
    svc = services(request.app.state)
    kind = classify(text)
    try:
        phone = parse_phone(sender, svc.settings.default_region).e164
    except InvalidRecipient:
        return {"kind": kind.value, "action": "invalid_sender"}
    rules = svc.acceptor.policy.rules(tenant, brand)
    scope_brand = None if rules.replies_global else brand
    action = "none"
    if kind is ReplyKind.RESUBSCRIBE and rules.replies_resubscribe:
        evidence = f"{provider} reply from the member: {text[:64]}"
        removed = await svc.optouts.remove(tenant, phone, brand=scope_brand, evidence=evidence, by=provider)
        action = "opted_in" if removed else "none"
    elif kind is ReplyKind.OPT_OUT:
        # The message the member answered: its timeline (and its campaign's funnel) says so, written
        # with the opt-out itself (once, a retry after 503 optout_not_replicated included).
        ev = events.encode(events.Unsubscribed(at=events.at(), source="sms_reply", brand=scope_brand))
        added = await svc.optouts.add(
            tenant,
            phone,
            brand=scope_brand,
            source="sms_reply",
            reason=text[:64],
            by=provider,
            answered=(ntf_id, ev) if ntf_id else None,
        )
        action = "opted_out" if added else "already_opted_out"
    # Every reply is recorded, whatever it asked for (a "1" choosing a redemption option too).
    intent = {ReplyKind.OPT_OUT: "opt_out", ReplyKind.RESUBSCRIBE: "opt_in"}.get(kind, "other")
    await svc.optouts.reply(
        tenant, phone, text=text, intent=intent, action=action, provider=provider, brand=brand
    )
    return {"kind": kind.value, "action": action}


HANDLERS = [replies]
