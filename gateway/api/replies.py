"""Members' replies (MO) from providers: ``POST /v1/inbound/{provider}/replies``; an unsubscribe
reply opts the member out, a resubscribe reply (where the tenant allows it) opts them back in."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Request, Response, post
from litestar.params import FromPath

from channels.signing import SIGNATURE_HEADER, verify
from compliance.replies import ReplyKind, classify
from gateway.api import views
from gateway.api.deps import json_response, raw_header, services
from gateway.api.inbound import empty_twiml, twilio_form, url_tenant
from gateway.errors import BadRequest, Forbidden, NotFound
from gateway.recipients import InvalidRecipient, parse_phone


class SimReply(msgspec.Struct):
    """A member's reply as the simulator pushes it."""

    text: str
    sender: str = msgspec.field(name="from")
    to: str = ""
    brand: str | None = None
    reference: str | None = None
    received_at: str | None = None


@post(
    "/v1/inbound/{provider:str}/replies",
    status_code=200,
    summary="Member replies (MO) from a provider",
    responses=views.ok(dict[str, Any], "The provider's own acknowledgement"),
)
async def replies(request: Request[Any, Any, Any], provider: FromPath[str]) -> Response[bytes]:
    """Each provider's own format and proof of origin; an unsubscribe reply opts the member out."""
    if provider == "simulator":
        return await _simulator_reply(request)
    if provider == "twilio":
        return await _twilio_reply(request)
    if provider == "alibaba":
        return await _alibaba_reply(request)
    if provider == "tencent":
        return await _tencent_reply(request)
    raise NotFound("unknown_provider", f"no replies endpoint for provider {provider!r}")


async def _apply(
    request: Request[Any, Any, Any], tenant: str, sender: str, text: str, brand: str | None, provider: str
) -> dict[str, Any]:
    """Classify one reply and act on it; idempotent (the same reply twice is one opt-out)."""
    svc = services(request.app.state)
    kind = classify(text)
    try:
        phone = parse_phone(sender, svc.settings.default_region).e164
    except InvalidRecipient:
        return {"kind": kind.value, "action": "invalid_sender"}
    rules = svc.acceptor.policy.rules(tenant, brand)
    scope_brand = None if rules.replies_global else brand
    if kind is ReplyKind.RESUBSCRIBE and rules.replies_resubscribe:
        evidence = f"{provider} reply from the member: {text[:64]}"
        removed = await svc.optouts.remove(tenant, phone, brand=scope_brand, evidence=evidence, by=provider)
        return {"kind": kind.value, "action": "opted_in" if removed else "none"}
    if kind is not ReplyKind.OPT_OUT:
        return {"kind": kind.value, "action": "none"}
    added = await svc.optouts.add(
        tenant, phone, brand=scope_brand, source="sms_reply", reason=text[:64], by=provider
    )
    return {"kind": kind.value, "action": "opted_out" if added else "already_opted_out"}


async def _simulator_reply(request: Request[Any, Any, Any]) -> Response[bytes]:
    svc = services(request.app.state)
    body = await request.body()
    if not verify(svc.settings.simulator_secret, body, raw_header(request, SIGNATURE_HEADER.encode())):
        raise Forbidden("bad_signature", "the request signature does not verify")
    try:
        reply = msgspec.json.decode(body, type=SimReply)
    except msgspec.DecodeError as exc:
        raise BadRequest("malformed_reply", str(exc)) from None
    # The simulator ties a reply to the last message it delivered to that number (a sub-port);
    # a reply to nothing it delivered belongs to the development tenant (it is the dev provider).
    tenant = (reply.reference or "").partition(":")[0] or svc.settings.dev_tenant
    return json_response(
        {"ok": True, **await _apply(request, tenant, reply.sender, reply.text, reply.brand, "simulator")}
    )


async def _twilio_reply(request: Request[Any, Any, Any]) -> Response[bytes]:
    """Form-encoded, signed; the tenant (and brand) in the webhook URL's query."""
    fields = await twilio_form(request)
    tenant = request.query_params.get("tenant") or ""
    if not tenant or "From" not in fields:
        raise BadRequest("malformed_reply", "the webhook URL needs ?tenant= and the form needs From and Body")
    await _apply(
        request, tenant, fields["From"], fields.get("Body", ""), request.query_params.get("brand"), "twilio"
    )
    return empty_twiml()


class AlibabaReply(msgspec.Struct):
    """One SmsUp record of Alibaba Cloud's HTTP batch push."""

    phone_number: str
    content: str
    send_time: str = ""
    dest_code: str = ""
    sequence_id: int | str = ""
    sign_name: str | None = None


async def _alibaba_reply(request: Request[Any, Any, Any]) -> Response[bytes]:
    """A JSON array of SmsUp records; answered {"code": 0} as Alibaba expects (else it pushes again)."""
    tenant = url_tenant(request, "alibaba")
    try:
        records = msgspec.json.decode(await request.body(), type=list[AlibabaReply])
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise BadRequest("malformed_reply", str(exc)) from None
    for record in records:
        # Alibaba's record has no message id: the member is matched by number and signature (brand).
        brand = (record.sign_name or "").strip("【】 ") or None
        await _apply(request, tenant, record.phone_number, record.content, brand, "alibaba")
    return json_response({"code": 0, "msg": "接收成功"})


class TencentReply(msgspec.Struct):
    """Tencent Cloud SMS reply callback (one reply per call)."""

    mobile: str
    text: str
    nationcode: str = "86"
    sign: str | None = None
    time: int | None = None
    extend: str | None = None


async def _tencent_reply(request: Request[Any, Any, Any]) -> Response[bytes]:
    """Answered {"result": 0, "errmsg": "OK"} as Tencent expects."""
    tenant = url_tenant(request, "tencent")
    try:
        reply = msgspec.json.decode(await request.body(), type=TencentReply)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise BadRequest("malformed_reply", str(exc)) from None
    sender = reply.mobile if reply.mobile.startswith("+") else f"+{reply.nationcode}{reply.mobile}"
    brand = (reply.sign or "").strip("【】 ") or None
    await _apply(request, tenant, sender, reply.text, brand, "tencent")
    return json_response({"result": 0, "errmsg": "OK"})


HANDLERS = [replies]
